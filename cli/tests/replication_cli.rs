//! The replication commands as a pipeline runs them (issue 4): `push`, `promote`, `status`,
//! `history`, `rollback`, `pull`, with targets named in a `sitebundle.toml` and credentials in
//! the environment only. Runs against the real services (`SITEBUNDLE_TEST_*`, see
//! ../shared/services) and checks that no known secret appears in any output.

use std::path::Path;
use std::process::{Command, Output};

fn need(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: run the tests through scripts/test, or start the services \
             (../shared/services/start) and `. /tmp/sitebundle-services/env` first"
        ),
    }
}

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "repl-cli-{tag}-{}-{}",
        std::process::id(),
        n % 1_000_000_000_000
    )
}

/// A `sitebundle` command with a clean, loopback-only environment.
fn sb(home: &Path, config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sitebundle"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("SITEBUNDLE_HOME", home.join("store"))
        .env("SITEBUNDLE_CONFIG", config)
        .env("SITEBUNDLE_ACTOR", "cli-test")
        .env("SITEBUNDLE_RETRIES", "2")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT", need("SITEBUNDLE_TEST_S3_ENDPOINT"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", need("SITEBUNDLE_TEST_S3_REGION"))
        .env(
            "AWS_ACCESS_KEY_ID",
            need("SITEBUNDLE_TEST_S3_ACCESS_KEY_ID"),
        )
        .env(
            "AWS_SECRET_ACCESS_KEY",
            need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"),
        )
        .env(
            "AZURE_STORAGE_ACCOUNT_NAME",
            need("SITEBUNDLE_TEST_AZURE_ACCOUNT"),
        )
        .env(
            "AZURE_STORAGE_ACCOUNT_KEY",
            need("SITEBUNDLE_TEST_AZURE_KEY"),
        )
        .env(
            "AZURE_STORAGE_ENDPOINT",
            need("SITEBUNDLE_TEST_AZURE_ENDPOINT"),
        )
        .env("AZURE_ALLOW_HTTP", "true")
        .env(
            "SITEBUNDLE_REGISTRY_USER",
            need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER"),
        )
        .env(
            "SITEBUNDLE_REGISTRY_PASSWORD",
            need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD"),
        )
        .env(
            "SITEBUNDLE_REGISTRY_CA",
            need("SITEBUNDLE_TEST_REGISTRY_CA"),
        );
    c
}

struct Run {
    code: Option<i32>,
    stdout: String,
    all: String,
}

fn run(c: &mut Command) -> Run {
    let out: Output = c.output().expect("run sitebundle");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Run {
        code: out.status.code(),
        all: format!("{stdout}\n{stderr}"),
        stdout,
    }
}

fn ok(c: &mut Command) -> Run {
    let r = run(c);
    assert_eq!(r.code, Some(0), "{c:?}:\n{}", r.all);
    r
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or("").trim().to_string()
}

#[test]
fn pipeline_push_promote_rollback_pull_status_history() {
    let corpus = std::path::PathBuf::from(need("SITEBUNDLE_TEST_CORPUS")).join("small");
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path();
    let name = unique("pipe");
    let config = home.join("sitebundle.toml");
    std::fs::write(
        &config,
        format!(
            "[targets]\n\
             dir = \"file://{dir}\"\n\
             reg = \"oci+http://{reg}/sbtest/{name}\"\n\
             secure = \"oci://{auth}/sbtest/{name}\"\n\
             s3 = \"s3://{bucket}/{name}\"\n\
             azure = \"az://{container}/{name}\"\n\
             [defaults]\n\
             to = [\"dir\", \"reg\", \"secure\", \"s3\", \"azure\"]\n",
            dir = home.join("target").display(),
            reg = need("SITEBUNDLE_TEST_REGISTRY"),
            auth = need("SITEBUNDLE_TEST_REGISTRY_AUTH"),
            bucket = need("SITEBUNDLE_TEST_S3_BUCKET"),
            container = need("SITEBUNDLE_TEST_AZURE_CONTAINER"),
        ),
    )
    .expect("write config");
    let mut outputs = String::new();

    let v1 = ok(sb(home, &config).arg("build").arg(corpus.join("v1")));
    let v1 = last_line(&v1.stdout);
    let v2 = ok(sb(home, &config).arg("build").arg(corpus.join("v2")));
    let v2 = last_line(&v2.stdout);

    let r = ok(sb(home, &config).args(["push", &v1, "--channel", "staging", "-m", "first"]));
    outputs.push_str(&r.all);
    let m1 = last_line(&r.stdout);
    let r = ok(sb(home, &config).args(["push", &v2, "--channel", "staging"]));
    outputs.push_str(&r.all);
    let m2 = last_line(&r.stdout);
    assert_ne!(m1, m2);
    let r = ok(sb(home, &config).args(["promote", "staging", "prod"]));
    outputs.push_str(&r.all);
    let r = ok(sb(home, &config).args(["status", "--verify"]));
    outputs.push_str(&r.all);
    assert!(r.stdout.contains("ok: 5 target(s) agree"), "{}", r.all);

    let r = ok(sb(home, &config).args(["history", "staging"]));
    outputs.push_str(&r.all);
    assert!(
        r.stdout.contains(&m1) && r.stdout.contains(&m2),
        "{}",
        r.all
    );
    assert!(
        r.stdout.contains("cli-test") && r.stdout.contains("first"),
        "{}",
        r.all
    );

    let r = ok(sb(home, &config).args(["rollback", "staging", "--steps", "1"]));
    outputs.push_str(&r.all);
    assert_eq!(last_line(&r.stdout), m1);
    let r = ok(sb(home, &config).args(["--json", "status", "--channel", "staging"]));
    let st: serde_json::Value = serde_json::from_str(&r.stdout).expect("status json");
    for t in st["targets"].as_array().expect("targets") {
        assert_eq!(t["channels"]["staging"]["manifest"], m1.as_str(), "{t}");
    }

    // Pull from one target into a fresh store (names and URLs both work).
    let other = home.join("other");
    let r = ok(sb(home, &config)
        .env("SITEBUNDLE_HOME", &other)
        .args(["pull", "prod", "--from", "secure", "--tag", "prod"]));
    outputs.push_str(&r.all);
    assert_eq!(last_line(&r.stdout), m2);
    ok(sb(home, &config)
        .env("SITEBUNDLE_HOME", &other)
        .args(["verify", "prod"]));

    // Disagreement makes status exit 5.
    ok(sb(home, &config).args(["push", &v1, "--to", "dir", "--channel", "prod"]));
    let r = run(sb(home, &config).args(["status"]));
    outputs.push_str(&r.all);
    assert_eq!(r.code, Some(5), "{}", r.all);

    // Credentials in a URL are refused, and not echoed.
    let r = run(sb(home, &config).args([
        "status",
        "--to",
        "oci://someone:url-secret-4711@127.0.0.1:1/x",
    ]));
    assert_eq!(r.code, Some(1), "{}", r.all);
    assert!(!r.all.contains("url-secret-4711"), "{}", r.all);
    // A wrong registry password fails without printing it.
    let r = run(sb(home, &config)
        .env("SITEBUNDLE_REGISTRY_PASSWORD", "wrong-secret-8815")
        .args(["push", &v1, "--to", "secure", "--channel", "x"]));
    assert_ne!(r.code, Some(0), "{}", r.all);
    outputs.push_str(&r.all);
    assert!(!r.all.contains("wrong-secret-8815"), "{}", r.all);

    for secret in [
        need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD"),
        need("SITEBUNDLE_TEST_S3_SECRET_ACCESS_KEY"),
        need("SITEBUNDLE_TEST_AZURE_KEY"),
    ] {
        assert!(
            !outputs.contains(&secret),
            "a secret appeared in the output"
        );
    }
}

/// Registry credentials from a docker-style auth file (`REGISTRY_AUTH_FILE`, `auths` entry with
/// base64 `user:password`), with no SITEBUNDLE_REGISTRY_* variable set.
#[test]
fn registry_credentials_from_auth_file() {
    let corpus = std::path::PathBuf::from(need("SITEBUNDLE_TEST_CORPUS")).join("small");
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path();
    let config = home.join("sitebundle.toml");
    std::fs::write(&config, "").expect("write config");
    let auth_host = need("SITEBUNDLE_TEST_REGISTRY_AUTH");
    let password = need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD");
    let token =
        base64(format!("{}:{password}", need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER")).as_bytes());
    let auth_file = home.join("auth.json");
    std::fs::write(
        &auth_file,
        format!("{{\"auths\": {{\"{auth_host}\": {{\"auth\": \"{token}\"}}}}}}"),
    )
    .expect("write auth file");
    let url = format!("oci://{auth_host}/sbtest/{}", unique("authfile"));
    let id = last_line(&ok(sb(home, &config).arg("build").arg(corpus.join("v1"))).stdout);
    let mut c = sb(home, &config);
    c.env_remove("SITEBUNDLE_REGISTRY_USER")
        .env_remove("SITEBUNDLE_REGISTRY_PASSWORD")
        .env("REGISTRY_AUTH_FILE", &auth_file);
    let r = ok(c.args(["push", &id, "--to", &url, "--channel", "live"]));
    assert!(!r.all.contains(&password));
    // Without any credentials the registry refuses.
    let mut c = sb(home, &config);
    c.env_remove("SITEBUNDLE_REGISTRY_USER")
        .env_remove("SITEBUNDLE_REGISTRY_PASSWORD");
    let r = run(c.args(["status", "--to", &url]));
    assert_ne!(r.code, Some(0), "{}", r.all);
}

/// Standard base64 with padding (enough for an auth file).
fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Registry credentials from a docker credential helper named in `credHelpers` (the helper
/// protocol: `docker-credential-<name> get`, registry on stdin, JSON on stdout). The helper here is
/// a two-line shell script standing in for a real one (pass, secretservice, ecr-login).
#[test]
fn registry_credentials_from_credential_helper() {
    use std::os::unix::fs::PermissionsExt;
    let corpus = std::path::PathBuf::from(need("SITEBUNDLE_TEST_CORPUS")).join("small");
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path();
    let config = home.join("sitebundle.toml");
    std::fs::write(&config, "").expect("write config");
    let auth_host = need("SITEBUNDLE_TEST_REGISTRY_AUTH");
    let password = need("SITEBUNDLE_TEST_REGISTRY_AUTH_PASSWORD");
    let bin = home.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-sbtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$1\" = get ] && [ \"$host\" = \"{auth_host}\" ] && \
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{}\",\"Secret\":\"{password}\"}}' \"$host\"\n",
            need("SITEBUNDLE_TEST_REGISTRY_AUTH_USER")
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let docker = home.join(".docker");
    std::fs::create_dir_all(&docker).expect("mkdir");
    std::fs::write(
        docker.join("config.json"),
        format!("{{\"credHelpers\": {{\"{auth_host}\": \"sbtest\"}}}}"),
    )
    .expect("write docker config");
    let url = format!("oci://{auth_host}/sbtest/{}", unique("helper"));
    let id = last_line(&ok(sb(home, &config).arg("build").arg(corpus.join("v1"))).stdout);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = sb(home, &config);
    c.env_remove("SITEBUNDLE_REGISTRY_USER")
        .env_remove("SITEBUNDLE_REGISTRY_PASSWORD")
        .env("PATH", path)
        .env("DOCKER_CONFIG", &docker);
    let r = ok(c.args(["push", &id, "--to", &url, "--channel", "live"]));
    assert!(!r.all.contains(&password));
}
