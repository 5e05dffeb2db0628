//! Issue 10, "one vocabulary across commands": every command's `--help` (with its one example and
//! the exit codes) and every `--json` shape are pinned by snapshot files in
//! `cli/tests/snapshots/issue_10/`, so they cannot drift unnoticed; the old spellings (`--to` for
//! targets, `rollback --to DIGEST`, `pull --from`) still work and warn on stderr.
//!
//! A snapshot that differs fails with both texts; after an intended change, run the test with
//! `SITEBUNDLE_UPDATE_SNAPSHOTS=1` and review the diff of the snapshot files.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// Every subcommand of `sitebundle`.
const COMMANDS: &[&str] = &[
    "build", "ls", "inspect", "verify", "diff", "extract", "export", "import", "list", "tag", "rm",
    "gc", "push", "pull", "promote", "rollback", "history", "status", "publish", "audit",
];

fn snapshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/issue_10")
}

/// Compare `got` with the snapshot `name` (or write it, with SITEBUNDLE_UPDATE_SNAPSHOTS=1).
fn check_snapshot(name: &str, got: &str, failures: &mut Vec<String>) {
    let path = snapshot_dir().join(name);
    if std::env::var_os("SITEBUNDLE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::create_dir_all(snapshot_dir()).expect("mkdir snapshots");
        std::fs::write(&path, got).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    if want != got {
        failures.push(format!(
            "snapshot {} differs (SITEBUNDLE_UPDATE_SNAPSHOTS=1 rewrites it):\n--- expected\n{want}\n--- got\n{got}",
            path.display()
        ));
    }
}

/// `sitebundle` with nothing of the test's environment but PATH (help texts show env values).
fn bare() -> Command {
    let mut c = Command::new(common::bin_path());
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("COLUMNS", "100");
    c
}

fn output(c: &mut Command) -> Output {
    c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"))
}

fn stdout_ok(c: &mut Command) -> String {
    let o = output(c);
    assert!(
        o.status.success(),
        "{c:?} failed ({}):\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn issue_10_vocabulary_help_shows_one_example_and_the_exit_codes_everywhere() {
    let mut failures = Vec::new();
    let top = stdout_ok(bare().arg("--help"));
    assert!(top.contains("Exit codes:"), "{top}");
    check_snapshot("help.txt", &top, &mut failures);
    for cmd in COMMANDS {
        let h = stdout_ok(bare().args([cmd, "--help"]));
        assert_eq!(
            h.matches("Example:").count(),
            1,
            "{cmd} --help shows one example:\n{h}"
        );
        assert!(
            h.contains(&format!("  sitebundle {cmd}")),
            "{cmd}'s example runs {cmd}:\n{h}"
        );
        assert!(
            h.contains("Exit codes: 0 ok"),
            "{cmd} --help lists exit codes:\n{h}"
        );
        // One vocabulary: targets are --target; the old spellings are hidden.
        assert!(!h.contains("--to "), "{cmd} --help shows --to:\n{h}");
        assert!(!h.contains("--from "), "{cmd} --help shows --from:\n{h}");
        check_snapshot(&format!("help-{cmd}.txt"), &h, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The shape of a JSON value: every key kept, every value replaced by its type; arrays by the
/// union of their elements' shapes; digests marked as such.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as V;
    match v {
        V::Null => V::Null,
        V::Bool(_) => "<bool>".into(),
        V::Number(_) => "<number>".into(),
        V::String(s) if s.starts_with("sha256:") && s.len() == 71 => "<digest>".into(),
        V::String(_) => "<string>".into(),
        V::Array(items) => {
            let mut merged = serde_json::Map::new();
            let mut scalar = None;
            for i in items {
                match shape(i) {
                    V::Object(o) => {
                        for (k, v) in o {
                            merged.entry(k).or_insert(v);
                        }
                    }
                    other => scalar = Some(other),
                }
            }
            match scalar {
                Some(s) if merged.is_empty() => V::Array(vec![s]),
                _ if merged.is_empty() => V::Array(Vec::new()),
                _ => V::Array(vec![V::Object(merged)]),
            }
        }
        V::Object(o) => V::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

#[test]
fn issue_10_vocabulary_every_json_output_has_version_1_and_a_pinned_shape() {
    let t = tempfile::tempdir().expect("tempdir");
    let home = t.path().join("store");
    let site_a = t.path().join("a");
    let site_b = t.path().join("b");
    common::sample_site(&site_a);
    common::sample_site(&site_b);
    common::write(&site_b, "index.html", b"<h1>changed</h1>\n");
    common::write(&site_b, "new.txt", b"new\n");
    let target = format!("file://{}", t.path().join("target").display());
    let json = |args: &[&str]| -> serde_json::Value {
        let out = stdout_ok(common::sb(&home).arg("--json").args(args));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}):\n{out}"))
    };
    let a = site_a.to_string_lossy().into_owned();
    let b = site_b.to_string_lossy().into_owned();
    let dest = t.path().join("out").to_string_lossy().into_owned();
    let archive = t.path().join("a.tar").to_string_lossy().into_owned();
    let other = t.path().join("other");
    let www = t.path().join("www").to_string_lossy().into_owned();
    let runs: Vec<(&str, serde_json::Value)> = vec![
        ("build", json(&["build", &a, "--tag", "a"])),
        ("build-b", json(&["build", &b, "--tag", "b"])),
        ("ls", json(&["ls", "a"])),
        ("inspect", json(&["inspect", "a"])),
        ("verify", json(&["verify", "a"])),
        ("diff", json(&["diff", "a", "b"])),
        ("extract", json(&["extract", "a", &dest])),
        ("export", json(&["export", "a", "-o", &archive])),
        ("import", json(&["import", &archive])),
        ("list", json(&["list"])),
        ("tag", json(&["tag", "a", "a2"])),
        (
            "push",
            json(&["push", "a", "--target", &target, "--channel", "staging"]),
        ),
        (
            "push-b",
            json(&["push", "b", "--target", &target, "--channel", "staging"]),
        ),
        (
            "promote",
            json(&["promote", "staging", "prod", "--target", &target]),
        ),
        (
            "rollback",
            json(&["rollback", "staging", "--steps", "1", "--target", &target]),
        ),
        (
            "history",
            json(&["history", "staging", "--target", &target]),
        ),
        ("status", json(&["status", "--target", &target])),
        ("status-digest", {
            let id = json(&["inspect", "b"])["id"]
                .as_str()
                .expect("id")
                .to_string();
            json(&["status", "--target", &target, "--digest", &id])
        }),
        ("pull", {
            let out =
                stdout_ok(common::sb(&other).args(["--json", "pull", "prod", "--target", &target]));
            serde_json::from_str(&out).expect("pull --json")
        }),
        (
            "publish",
            json(&["publish", "a", "--target", &format!("file+site://{www}")]),
        ),
        ("audit", {
            // Python's http.server is a real static server: audit fetches every file of the
            // published tree from it (its Content-Type table is its own, hence --headers none).
            let server = StaticServer::start(Path::new(&www));
            json(&["audit", &server.url, "--digest", "a", "--headers", "none"])
        }),
        ("rm", json(&["rm", "b"])),
        ("gc", json(&["gc"])),
    ];
    let mut failures = Vec::new();
    for (name, v) in &runs {
        assert!(v.is_object(), "{name}: --json prints one object: {v}");
        assert_eq!(v["version"], 1, "{name}: \"version\": 1 in {v}");
        let s = serde_json::to_string_pretty(&shape(v)).expect("shape") + "\n";
        check_snapshot(&format!("json-{name}.json"), &s, &mut failures);
    }
    // Every command with a --json output is covered (tag, rm and gc included).
    for cmd in COMMANDS {
        assert!(
            runs.iter().any(|(n, _)| n == cmd),
            "{cmd}: no --json shape pinned"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn run_warn(home: &Path, args: &[&str], old: &str) -> String {
    let o = output(common::sb(home).args(args));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "{args:?} (old spelling) still works: {}\n{stderr}",
        o.status
    );
    assert!(
        stderr.contains(&format!("warning: `{old}` is deprecated")),
        "{args:?} warns about {old} on stderr:\n{stderr}"
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn issue_10_vocabulary_old_spellings_still_work_and_warn() {
    let t = tempfile::tempdir().expect("tempdir");
    let home = t.path().join("store");
    let site = t.path().join("site");
    common::sample_site(&site);
    let id1 = common::build(&home, &site, &["--tag", "v1"]);
    common::write(&site, "index.html", b"<h1>two</h1>\n");
    common::build(&home, &site, &["--tag", "v2"]);
    let target = format!("file://{}", t.path().join("target").display());
    let m1 = common::last_line(
        run_warn(
            &home,
            &["push", "v1", "--to", &target, "-c", "staging"],
            "--to TARGET",
        )
        .as_bytes(),
    );
    run_warn(
        &home,
        &["push", "v2", "--to", &target, "-c", "staging"],
        "--to TARGET",
    );
    run_warn(
        &home,
        &["promote", "staging", "prod", "--to", &target],
        "--to TARGET",
    );
    run_warn(
        &home,
        &["history", "staging", "--to", &target],
        "--to TARGET",
    );
    run_warn(&home, &["status", "--to", &target], "--to TARGET");
    // rollback's --to was a digest: now --digest (a bundle id here; it resolves to the manifest).
    let back = run_warn(
        &home,
        &["rollback", "staging", "--to", &id1, "--target", &target],
        "rollback --to DIGEST",
    );
    assert_eq!(common::last_line(back.as_bytes()), m1);
    let other = t.path().join("other");
    let pulled = run_warn(
        &other,
        &["pull", "staging", "--from", &target],
        "pull --from TARGET",
    );
    assert_eq!(common::last_line(pulled.as_bytes()), m1);
    // The new spellings do not warn; --quiet silences the warning too.
    for args in [
        vec!["status", "--target", target.as_str()],
        vec!["--quiet", "status", "--to", target.as_str()],
    ] {
        let o = output(common::sb(&home).args(&args));
        assert!(o.status.success(), "{args:?}");
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("deprecated"),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Both --digest and its old spelling at once is a usage error (exit 2), not a guess.
    let o = output(common::sb(&home).args([
        "rollback", "staging", "--digest", &id1, "--to", &id1, "--target", &target,
    ]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `python3 -m http.server` serving `dir` on a free loopback port, killed on drop.
struct StaticServer {
    child: std::process::Child,
    url: String,
}

impl StaticServer {
    fn start(dir: &Path) -> StaticServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "http.server did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        StaticServer {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
