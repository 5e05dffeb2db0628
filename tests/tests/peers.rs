//! Peers read our bundles (issue 3): `sitebundle export` → `skopeo copy oci-archive:` → `umoci
//! unpack` (gzip layers) gives the site; plain `zstd -d | tar -x` of each layer in order, straight
//! from the store's OCI layout, gives the site; `skopeo inspect oci:$SITEBUNDLE_HOME:tag` reads
//! the store. Tools come from ../shared/services/install; a missing tool fails the test.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

/// A site with what the corpus's small site lacks: a symlink, an executable, duplicates
/// (stored as tar hardlinks), an empty directory, a long unicode path, an empty file.
fn feature_site(root: &Path) {
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir -p");
        fs::write(&p, bytes).expect("write");
    };
    w("index.html", b"<h1>home</h1>\n");
    w("a/one.css", b"body{color:red}\n");
    w("b/two.css", b"body{color:red}\n");
    w("c/three.css", b"body{color:red}\n");
    w("empty.txt", b"");
    let long = format!("unicode/{}/ページ-😀.html", "é".repeat(60));
    w(&long, b"<p>long</p>\n");
    let img: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    w("img/big.png", &img);
    w("img/copy.png", &img);
    w("bin/run.sh", b"#!/bin/sh\nexit 0\n");
    fs::set_permissions(root.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir_all(root.join("empty-dir/nested")).expect("mkdir");
    std::os::unix::fs::symlink("../index.html", root.join("a/home.html")).expect("symlink");
    std::os::unix::fs::symlink("a", root.join("alias")).expect("symlink");
}

fn sites() -> Vec<(String, std::path::PathBuf, Option<tempfile::TempDir>)> {
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    vec![
        ("features".to_string(), site, Some(t)),
        ("small-v1".to_string(), corpus_site("small", "v1"), None),
    ]
}

#[test]
fn gzip_bundle_through_skopeo_and_umoci_unpacks_to_the_site() {
    require_tool("skopeo");
    require_tool("umoci");
    for (name, site, _keep) in sites() {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--compression", "gzip", "--tag", "g"]);
        let archive = work.path().join("x.tar");
        run_ok(sb(home.path()).args(["export", "g", "-o"]).arg(&archive));
        let layout = work.path().join("oci");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:g", layout.display()),
        ]));
        let bundle_dir = work.path().join("bundle");
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--rootless", "--image"])
                .arg(format!("{}:g", layout.display()))
                .arg(&bundle_dir),
        );
        let rootfs = bundle_dir.join("rootfs");
        assert_same_tree(
            &format!("{name}: umoci rootfs"),
            &snapshot(&site),
            &snapshot(&rootfs),
        );
        assert_eq!(b3sum_walk(&site), b3sum_walk(&rootfs), "{name}: b3sum walk");
    }
}

#[test]
fn zstd_layers_untarred_in_order_give_the_site() {
    require_tool("zstd");
    require_tool("skopeo");
    for (name, site, _keep) in sites() {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--tag", "z"]);
        // Straight from the store, which is an OCI layout.
        let root = work.path().join("from-store");
        untar_layers(home.path(), "z", "zstd -d -c", &root);
        assert_same_tree(
            &format!("{name}: zstd|tar from the store"),
            &snapshot(&site),
            &snapshot(&root),
        );
        assert_eq!(b3sum_walk(&site), b3sum_walk(&root), "{name}: b3sum walk");
        // And after a trip through skopeo (export, oci-archive → oci layout).
        let archive = work.path().join("x.tar");
        run_ok(sb(home.path()).args(["export", "z", "-o"]).arg(&archive));
        let layout = work.path().join("oci");
        run_ok(Command::new("skopeo").args([
            "copy",
            "--quiet",
            &format!("oci-archive:{}", archive.display()),
            &format!("oci:{}:z", layout.display()),
        ]));
        let root2 = work.path().join("from-skopeo");
        untar_layers(&layout, "z", "zstd -d -c", &root2);
        assert_same_tree(
            &format!("{name}: zstd|tar after skopeo"),
            &snapshot(&site),
            &snapshot(&root2),
        );
    }
}

#[test]
fn gzip_layers_untarred_in_order_give_the_site() {
    for (name, site, _keep) in sites().into_iter().take(1) {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        build(home.path(), &site, &["--compression", "gzip", "--tag", "g"]);
        let root = work.path().join("root");
        untar_layers(home.path(), "g", "gzip -d -c", &root);
        assert_same_tree(
            &format!("{name}: gzip|tar"),
            &snapshot(&site),
            &snapshot(&root),
        );
    }
}

#[test]
fn skopeo_inspects_the_store_and_the_archive() {
    require_tool("skopeo");
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    let home = tempfile::tempdir().expect("tempdir");
    let id = build(home.path(), &site, &["--tag", "latest-site"]);
    let ours = inspect(home.path(), "latest-site");
    assert_eq!(ours["id"], id.as_str());
    let out = run_ok(Command::new("skopeo").args([
        "inspect",
        &format!("oci:{}:latest-site", home.path().display()),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(v["Digest"], ours["manifest"], "{v}");
    let theirs: Vec<&str> = v["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().expect("layer digest"))
        .collect();
    let ours_layers: Vec<&str> = ours["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(theirs, ours_layers);
    assert_eq!(v["Os"], "linux");
    // The raw config skopeo reads is our config blob: its digest is the bundle id.
    let cfg = run_ok(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--raw",
        &format!("oci:{}:latest-site", home.path().display()),
    ]));
    let digest = format!("sha256:{}", sha256_hex(&cfg.stdout));
    assert_eq!(digest, id, "config digest is the bundle id");
    // And the exported archive is readable the same way.
    let archive = t.path().join("x.tar");
    run_ok(
        sb(home.path())
            .args(["export", "latest-site", "-o"])
            .arg(&archive),
    );
    let out = run_ok(
        Command::new("skopeo").args(["inspect", &format!("oci-archive:{}", archive.display())]),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo prints JSON");
    assert_eq!(v["Digest"], ours["manifest"]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    let d = bundle::Digest::of(bytes);
    d.hex()
}

// ---------------------------------------------------------------------------------------------
// Issue 8, "…and accept every honest copy": registries and their tools re-compress layers. The
// diff_ids and the config (the bundle id) stay; layer 0 loses its index trailer; layers of one
// copy may mix gzip and zstd, or be plain tar, or sit in a Docker schema 2 manifest. Each copy,
// made by the real tools against the test registry, must pull, verify, extract and install
// (`sitebundle-init`, its peak RSS measured) to the same tree.

fn registry() -> String {
    std::env::var("SITEBUNDLE_TEST_REGISTRY")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("SITEBUNDLE_TEST_REGISTRY is not set: run the tests with scripts/test")
        })
}

fn unique_repo(what: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("issue8-{what}-{}-{}", std::process::id(), n % 1_000_000_000)
}

/// podman with its own storage (vfs, under `dir`), so the tests touch no system image store.
fn podman(dir: &Path) -> Command {
    let conf = dir.join("storage.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{0}/run\"\ngraphroot = \"{0}/graph\"\n",
                dir.display()
            ),
        )
        .expect("write storage.conf");
    }
    let mut c = Command::new("podman");
    c.env("CONTAINERS_STORAGE_CONF", conf);
    c
}

/// `curl -X PUT` of `body` to `url`; the HTTP status.
fn curl_put(url: &str, content_type: &str, body: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().expect("tempfile");
    fs::write(f.path(), body).expect("write body");
    let out = run_ok(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {content_type}"),
        "--data-binary",
        &format!("@{}", f.path().display()),
        url,
    ]));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Upload a blob to `repo` with the registry API (monolithic upload); its digest.
fn upload_blob(reg: &str, repo: &str, bytes: &[u8]) -> String {
    let out = run_ok(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-X",
        "POST",
        &format!("http://{reg}/v2/{repo}/blobs/uploads/"),
    ]));
    let headers = String::from_utf8_lossy(&out.stdout);
    let location = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in {headers}"));
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{reg}{location}")
    };
    let digest = format!("sha256:{}", sha256_hex(bytes));
    let sep = if url.contains('?') { '&' } else { '?' };
    let status = curl_put(
        &format!("{url}{sep}digest={digest}"),
        "application/octet-stream",
        bytes,
    );
    assert_eq!(status, "201", "blob upload");
    digest
}

/// The manifest digest skopeo reads for `docker://REF`, and the layer media types.
fn remote_manifest(reference: &str) -> (String, Vec<String>) {
    let out = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).expect("manifest JSON");
    let types = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().expect("mediaType").to_string())
        .collect();
    (format!("sha256:{}", sha256_hex(&out.stdout)), types)
}

/// `sitebundle-init` from one registry origin, its peak RSS measured.
fn init_from(origin: &str, digest: &str, dest: &Path) -> testkit::rss::Measured {
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("sitebundle-init"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SITEBUNDLE_") && !k.starts_with("SITEBUNDLE_TEST_") {
            c.env_remove(k);
        }
    }
    c.env("SITEBUNDLE_RETRIES", "0")
        .env("SITEBUNDLE_TIMEOUT", "60s")
        .env("SITEBUNDLE_CONNECT_TIMEOUT", "3s")
        .args(["--origin", origin, "--digest", digest, "--dest"])
        .arg(dest);
    testkit::rss::run(&c)
}

/// Pull `manifest` from `origin` into a new store, verify and extract it, install it with
/// `sitebundle-init`: every result must be `id` and the tree of `site`.
fn copy_is_readable(what: &str, origin: &str, manifest: &str, id: &str, site: &Path) {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let out = run_ok(
        sb(home.path())
            .args(["pull", manifest, "--from", origin, "--tag", "copy"])
            .env_remove("SITEBUNDLE_CONFIG"),
    );
    let _ = out;
    let v = inspect(home.path(), "copy");
    assert_eq!(v["id"], id, "{what}: pulled bundle id");
    run_ok(sb(home.path()).args(["verify", "copy"]));
    // The spec's reference reader reads the copy too (rebuilding its index when layer 0 lost it).
    let reader = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/reference/read_bundle.py");
    let out = run_ok(
        Command::new("python3")
            .arg(reader)
            .arg(home.path())
            .arg("copy"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        id,
        "{what}: read_bundle.py"
    );
    let dest = work.path().join("extracted");
    run_ok(sb(home.path()).args(["extract", "copy"]).arg(&dest));
    assert_same_tree(
        &format!("{what}: extract"),
        &snapshot(site),
        &snapshot(&dest),
    );
    let dest = work.path().join("dest");
    let m = init_from(origin, manifest, &dest);
    assert_eq!(m.code, Some(0), "{what}: sitebundle-init: {}", m.err());
    eprintln!(
        "{what}: sitebundle-init peak RSS {:.1} MiB",
        m.max_rss_mib()
    );
    assert!(
        m.max_rss_kib <= 128 * 1024,
        "{what}: sitebundle-init peak RSS {:.1} MiB is above 128 MiB",
        m.max_rss_mib()
    );
    assert_same_tree(
        &format!("{what}: sitebundle-init"),
        &snapshot(site),
        &snapshot(&dest.join("current")),
    );
}

#[test]
fn issue_8_copies_recompressed_by_skopeo_and_podman_pull_and_install() {
    require_tool("skopeo");
    require_tool("podman");
    let reg = registry();
    let t = tempfile::tempdir().expect("tempdir");
    let v1 = t.path().join("v1");
    feature_site(&v1);
    let v2 = t.path().join("v2");
    feature_site(&v2);
    fs::write(v2.join("index.html"), b"<h1>home, changed</h1>\n").expect("write");
    let home = tempfile::tempdir().expect("tempdir");
    let id1 = build(home.path(), &v1, &["--tag", "v1"]);
    let id2 = build(home.path(), &v2, &["--tag", "v2"]);
    let id1g = build(home.path(), &v1, &["--compression", "gzip", "--tag", "v1g"]);
    assert_eq!(id1, id1g, "one site, one id, whatever the compression");
    let archive = |tag: &str| {
        let a = t.path().join(format!("{tag}.tar"));
        run_ok(sb(home.path()).args(["export", tag, "-o"]).arg(&a));
        a
    };
    let (a1, a2, a1g) = (archive("v1"), archive("v2"), archive("v1g"));

    // skopeo, all layers re-compressed to gzip: layer 0 loses its index trailer.
    let repo = unique_repo("mix");
    let dst = format!("{reg}/{repo}");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "gzip",
        &format!("oci-archive:{}", a1.display()),
        &format!("docker://{dst}:v1"),
    ]));
    // (skopeo reuses a compressed form its blob cache knows is in the registry already, so
    // which layers it re-compressed depends on what was pushed before: printed, not asserted.)
    let (m, types) = remote_manifest(&format!("{dst}:v1"));
    eprintln!("skopeo copy --dest-compress-format gzip: layers {types:?}");
    copy_is_readable("skopeo gzip", &format!("oci+http://{dst}"), &m, &id1, &v1);

    // podman push of v1 with gzip, then of v2 with zstd, into one repository. podman reuses
    // whatever compressed form its blob cache and the registry already know for a layer, so its
    // copies may mix compressions (what issue 8 saw) or not, depending on what was pushed
    // before; either way they must be readable. `podman load` names each image after the tag
    // `export` recorded ("v1", "v2", not "latest" for both).
    let repo = unique_repo("podman");
    let dst = format!("{reg}/{repo}");
    for (archive, name, format, id, site) in [
        (&a1, "v1", "gzip", &id1, &v1),
        (&a2, "v2", "zstd", &id2, &v2),
    ] {
        let out = run_ok(podman(t.path()).args(["load", "-i"]).arg(archive));
        let loaded = String::from_utf8_lossy(&out.stdout);
        assert!(
            loaded.contains(&format!("localhost/{name}:latest")),
            "podman load: {loaded}"
        );
        run_ok(podman(t.path()).args([
            "push",
            "--quiet",
            "--tls-verify=false",
            "--compression-format",
            format,
            &format!("localhost/{name}:latest"),
            &format!("docker://{dst}:{name}"),
        ]));
        let (m, types) = remote_manifest(&format!("{dst}:{name}"));
        eprintln!("podman push {name} --compression-format {format}: layers {types:?}");
        copy_is_readable(
            &format!("podman {format}"),
            &format!("oci+http://{dst}"),
            &m,
            id,
            site,
        );
    }

    // A copy whose layers mix compressions and whose layer 0 lost its trailer, made
    // deterministic: layer 0 decompressed with `zstd -d` (which drops the trailer) and
    // re-compressed with `gzip -n`, uploaded with the registry API beside sitebundle's own zstd
    // push, and a manifest naming that gzip layer 0 and the zstd layers 1 and 2. (No tool
    // writes a given mix on demand; the bytes are the tools' own.)
    let repo = unique_repo("mixed");
    let dst = format!("{reg}/{repo}");
    run_ok(sb(home.path()).args(["push", "v1", "--to", &format!("oci+http://{dst}")]));
    let ours = inspect(home.path(), "v1");
    let l0 = ours["layers"][0]["digest"].as_str().expect("digest");
    let l0_path = home.path().join("blobs/sha256").join(&l0[7..]);
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("zstd -d -c '{}' | gzip -n -c", l0_path.display())),
    );
    let gz = out.stdout;
    let gz_digest = upload_blob(&reg, &repo, &gz);
    let manifest_digest = ours["manifest"].as_str().expect("manifest");
    let mut mixed: serde_json::Value = serde_json::from_slice(
        &fs::read(home.path().join("blobs/sha256").join(&manifest_digest[7..])).expect("manifest"),
    )
    .expect("json");
    mixed["layers"][0] = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": gz_digest, "size": gz.len()});
    let body = serde_json::to_vec(&mixed).expect("json");
    let digest = format!("sha256:{}", sha256_hex(&body));
    let status = curl_put(
        &format!("http://{reg}/v2/{repo}/manifests/{digest}"),
        "application/vnd.oci.image.manifest.v1+json",
        &body,
    );
    assert_eq!(status, "201", "PUT mixed manifest");
    let (_, types) = remote_manifest(&format!("{dst}@{digest}"));
    assert_eq!(
        types,
        [
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ]
    );
    copy_is_readable(
        "mixed gzip+zstd",
        &format!("oci+http://{dst}"),
        &digest,
        &id1,
        &v1,
    );

    // skopeo --format v2s2: a Docker schema 2 manifest (Docker media types, no annotations).
    let repo = unique_repo("v2s2");
    let dst = format!("{reg}/{repo}");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci-archive:{}", a1g.display()),
        &format!("docker://{dst}:v1"),
    ]));
    let (m, types) = remote_manifest(&format!("{dst}:v1"));
    assert!(
        types
            .iter()
            .all(|t| t == "application/vnd.docker.image.rootfs.diff.tar.gzip"),
        "{types:?}"
    );
    copy_is_readable("skopeo v2s2", &format!("oci+http://{dst}"), &m, &id1, &v1);
}

#[test]
fn issue_8_uncompressed_copy_by_skopeo_imports() {
    // `skopeo copy --dest-decompress` to a `dir:` writes plain tar layers
    // (`application/vnd.oci.image.layer.v1.tar`), layer 0 without its trailer. Put in an
    // oci-archive, `sitebundle import` must rebuild the index and verify it.
    require_tool("skopeo");
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    let home = tempfile::tempdir().expect("tempdir");
    let id = build(home.path(), &site, &["--tag", "v1"]);
    let archive = t.path().join("v1.tar");
    run_ok(sb(home.path()).args(["export", "v1", "-o"]).arg(&archive));
    let dir = t.path().join("dir");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-decompress",
        &format!("oci-archive:{}", archive.display()),
        &format!("dir:{}", dir.display()),
    ]));
    let manifest = fs::read(dir.join("manifest.json")).expect("manifest.json");
    let m: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
    assert!(m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar"));
    // The dir transport names blobs by hex; an OCI layout wants blobs/sha256/<hex>.
    let layout = t.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
    for e in fs::read_dir(&dir).expect("read dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        if name.len() == 64 {
            fs::copy(&p, layout.join("blobs/sha256").join(&name)).expect("copy blob");
        }
    }
    let md = sha256_hex(&manifest);
    fs::write(layout.join("blobs/sha256").join(&md), &manifest).expect("manifest blob");
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{md}"), "size": manifest.len(),
        "annotations": {"org.opencontainers.image.ref.name": "plain"}}]});
    fs::write(layout.join("index.json"), index.to_string()).expect("index.json");
    let plain = t.path().join("plain.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&plain)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    let other = tempfile::tempdir().expect("tempdir");
    run_ok(sb(other.path()).arg("import").arg(&plain));
    let v = inspect(other.path(), "plain");
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["compression"], "tar");
    run_ok(sb(other.path()).args(["verify", "plain"]));
    let dest = t.path().join("out");
    run_ok(sb(other.path()).args(["extract", "plain"]).arg(&dest));
    assert_same_tree("plain tar copy", &snapshot(&site), &snapshot(&dest));
}

#[test]
fn issue_8_export_names_the_image_by_its_tag() {
    // `export` records REF as the image name when REF is a tag (podman load and ctr import then
    // keep one name per bundle), the bundle's one tag when REF is a digest, `--name` when given.
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    feature_site(&site);
    let home = tempfile::tempdir().expect("tempdir");
    let id = build(home.path(), &site, &["--tag", "v42"]);
    let name_in = |args: &[&str]| -> String {
        let a = t.path().join("x.tar");
        let _ = fs::remove_file(&a);
        run_ok(sb(home.path()).arg("export").args(args).arg("-o").arg(&a));
        let out = run_ok(Command::new("tar").arg("-xOf").arg(&a).arg("index.json"));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("index.json");
        v["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .expect("ref name")
            .to_string()
    };
    assert_eq!(name_in(&["v42"]), "v42");
    assert_eq!(name_in(&[&id]), "v42");
    assert_eq!(name_in(&["v42", "--name", "other"]), "other");
}

#[test]
fn issue_8_index_bomb_sitebundle_init_stays_within_128_mib() {
    // Issue 8 item 4 for the installer: a directory origin (a store is an OCI layout) serves the
    // 4M-entry index bomb and an honest bundle whose index is too large to keep in memory.
    // `sitebundle-init` refuses the first as an integrity failure (exit 3) and installs the
    // second, each within 128 MiB of RSS (wait4's figure, `testkit::rss`).
    use bundle::{Compression, Store};
    let origin = tempfile::tempdir().expect("tempdir");
    let store = Store::open(origin.path()).expect("store");
    let (index, tars) = testkit::bombs::index_bomb(4_000_000);
    let bomb = testkit::craft::craft_with(&store, Compression::Zstd, &index, &tars);
    let (index, tars) = testkit::bombs::large_index(12_000, 4);
    let large = testkit::craft::craft_with(&store, Compression::Gzip, &index, &tars);
    let url = format!("file://{}", origin.path().display());
    let work = tempfile::tempdir().expect("tempdir");
    let dest = work.path().join("bomb");
    let m = init_from(&url, &bomb.manifest.to_string(), &dest);
    eprintln!(
        "sitebundle-init (index bomb): exit {:?}, peak RSS {:.1} MiB",
        m.code,
        m.max_rss_mib()
    );
    assert_eq!(m.code, Some(3), "{}", m.err());
    assert!(m.err().contains("entries"), "{}", m.err());
    assert!(
        m.max_rss_kib <= 128 * 1024,
        "peak RSS {:.1} MiB",
        m.max_rss_mib()
    );
    assert!(!dest.join("current").exists());
    let dest = work.path().join("large");
    let m = init_from(&url, &large.manifest.to_string(), &dest);
    eprintln!(
        "sitebundle-init (35 MB index): exit {:?}, peak RSS {:.1} MiB",
        m.code,
        m.max_rss_mib()
    );
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert!(
        m.max_rss_kib <= 128 * 1024,
        "peak RSS {:.1} MiB",
        m.max_rss_mib()
    );
    let page = dest
        .join("current")
        .join(testkit::bombs::large_index_page(2, 11_999));
    assert_eq!(fs::read(page).expect("page"), b"<p>page 11999</p>\n");
}

/// `push` to a registry streams each layer from the store: it read the whole blob into memory
/// first (a 136 MB layer on the large corpus, and layers are pushed several at a time). Here a
/// site of one 160 MiB incompressible file makes a 160 MiB layer; the push's peak RSS (the
/// kernel's `wait4` figure) must stay far below it, and the registry must serve the layer back
/// whole (`pull` verifies every digest).
#[test]
fn push_to_a_registry_streams_layers_in_flat_memory() {
    let reg = registry();
    let t = tempfile::tempdir().expect("tempdir");
    let home = t.path().join("store");
    let site = t.path().join("site");
    fs::create_dir_all(&site).expect("mkdir");
    // Incompressible: xorshift bytes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut big = Vec::with_capacity(160 << 20);
    while big.len() < 160 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(site.join("video.bin"), &big).expect("write");
    drop(big);
    fs::write(site.join("index.html"), "<p>big</p>").expect("write");
    run_ok(sb(&home).args(["build", "--tag", "big"]).arg(&site));
    let url = format!("oci+http://{reg}/{}", unique_repo("stream"));
    let mut push = sb(&home);
    push.args(["push", "big", "--target", &url, "--channel", "prod"]);
    let m = testkit::rss::run(&push);
    assert_eq!(m.code, Some(0), "push failed: {}", m.err());
    eprintln!(
        "push of a 160 MiB layer: peak RSS {:.1} MiB",
        m.max_rss_mib()
    );
    assert!(
        m.max_rss_mib() < 96.0,
        "push held the layer in memory: peak RSS {:.1} MiB",
        m.max_rss_mib()
    );
    let home2 = t.path().join("store2");
    run_ok(sb(&home2).args(["pull", "prod", "--target", &url]));
}
