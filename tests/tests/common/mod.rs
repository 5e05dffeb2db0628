//! Helpers for the corpus and peer tests: where the corpus and the binary are, running the CLI
//! against a private store, and comparing trees with independent tools (`b3sum`, `tar`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Environment variable naming the test corpus (`shared/make-corpus` output).
pub const CORPUS_ENV: &str = "SITEBUNDLE_TEST_CORPUS";

/// The corpus directory; panics (so the test fails, never skips) when it is not there.
pub fn corpus() -> PathBuf {
    let Some(dir) = std::env::var_os(CORPUS_ENV).filter(|v| !v.is_empty()) else {
        panic!(
            "{CORPUS_ENV} is not set: run the tests with scripts/test, which builds the corpus \
             (or run ../shared/make-corpus DIR and set {CORPUS_ENV}=DIR)"
        );
    };
    let dir = PathBuf::from(dir);
    for site in ["small/v1", "edge/v1"] {
        assert!(
            dir.join(site).is_dir(),
            "{CORPUS_ENV}={} has no {site}: run scripts/test, which builds the corpus \
             (or ../shared/make-corpus {})",
            dir.display(),
            dir.display()
        );
    }
    dir
}

/// One site version of the corpus, e.g. `corpus_site("medium", "v2")`; panics when missing.
pub fn corpus_site(site: &str, version: &str) -> PathBuf {
    let p = corpus().join(site).join(version);
    assert!(
        p.is_dir(),
        "{} is missing: run scripts/test, which builds the corpus",
        p.display()
    );
    p
}

/// The `sitebundle` binary, built beside this test (as `cargo test --workspace` does).
pub fn bin() -> PathBuf {
    let p = assert_cmd::cargo::cargo_bin("sitebundle");
    assert!(
        p.is_file(),
        "{} is missing: build it with `cargo build -p sitebundle` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// `sitebundle` with `SITEBUNDLE_HOME=home`.
pub fn sb(home: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("SITEBUNDLE_HOME", home)
        .env_remove("RAYON_NUM_THREADS")
        .arg("--quiet");
    c
}

/// Run a command, panic with its stderr unless it succeeds.
pub fn run_ok(c: &mut Command) -> Output {
    let out = c
        .output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Build `dir` into the store at `home` with extra args; return the bundle id.
pub fn build(home: &Path, dir: &Path, extra: &[&str]) -> String {
    let out = run_ok(sb(home).arg("build").arg(dir).args(extra));
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "bad id {id:?}");
    id
}

/// Panic with an install hint unless `tool` runs.
pub fn require_tool(tool: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{tool} is not installed: run ../shared/services/install (scripts/test does)"
    );
}

/// The independent hash walk: `find . -type f -print0 | LC_ALL=C sort -z | xargs -0 b3sum`.
pub fn b3sum_walk(dir: &Path) -> String {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r b3sum")
            .current_dir(dir),
    );
    String::from_utf8(out.stdout).expect("b3sum prints UTF-8 for UTF-8 names")
}

/// What a tree entry is, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Directory.
    Dir,
    /// Regular file: BLAKE3 of its bytes, its size, whether any execute bit is set.
    File {
        /// BLAKE3 hex.
        hash: String,
        /// Size.
        len: u64,
        /// Executable.
        exec: bool,
    },
    /// Symlink and its target.
    Symlink(String),
}

/// Every entry under `root` (not following symlinks), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    snapshot_into(root, root, &mut out);
    out
}

fn snapshot_into(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let p = e.expect("dir entry").path();
        let rel = p
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        if ft.is_symlink() {
            let t = fs::read_link(&p).expect("readlink");
            out.insert(rel, Node::Symlink(t.to_string_lossy().into_owned()));
        } else if ft.is_dir() {
            out.insert(rel, Node::Dir);
            snapshot_into(root, &p, out);
        } else {
            let bytes = fs::read(&p).expect("read file");
            out.insert(
                rel,
                Node::File {
                    hash: bundle::FileHash::of(&bytes).hex(),
                    len: md.len(),
                    exec: md.permissions().mode() & 0o111 != 0,
                },
            );
        }
    }
}

/// Compare two snapshots and panic with the first few differences.
pub fn assert_same_tree(
    what: &str,
    expected: &BTreeMap<String, Node>,
    got: &BTreeMap<String, Node>,
) {
    if expected == got {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in expected {
        match got.get(k) {
            None => diffs.push(format!("missing {k}")),
            Some(g) if g != v => diffs.push(format!("differs {k}: {v:?} vs {g:?}")),
            _ => {}
        }
    }
    for k in got.keys() {
        if !expected.contains_key(k) {
            diffs.push(format!("extra {k}"));
        }
    }
    diffs.truncate(20);
    panic!("{what}: trees differ:\n{}", diffs.join("\n"));
}

/// Parse `sitebundle inspect --json REF`.
pub fn inspect(home: &Path, reference: &str) -> serde_json::Value {
    let out = run_ok(sb(home).args(["inspect", "--json", reference]));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints JSON")
}

/// The layers (digest → compressed size) of `sitebundle inspect --json` output.
pub fn layer_sizes(inspected: &serde_json::Value) -> BTreeMap<String, u64> {
    inspected["layers"]
        .as_array()
        .expect("layers array")
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().expect("digest").to_string(),
                l["size"].as_u64().expect("size"),
            )
        })
        .collect()
}

/// Extract each layer blob of the manifest tagged `tag` in the OCI layout `layout` with
/// `<decompress> | tar -x`, in order, into `root` (created).
pub fn untar_layers(layout: &Path, tag: &str, decompress: &str, root: &Path) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("read index.json"))
            .expect("index.json is JSON");
    let desc = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no manifest tagged {tag} in {}", layout.display()));
    let blob = |d: &serde_json::Value| {
        let d = d.as_str().expect("digest string");
        layout
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").expect("sha256 digest"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(blob(&desc["digest"])).expect("read manifest"))
            .expect("manifest is JSON");
    fs::create_dir_all(root).expect("mkdir root");
    for l in manifest["layers"].as_array().expect("layers") {
        let cmd = format!(
            "{decompress} < '{}' | tar -x --no-same-owner -f - -C '{}'",
            blob(&l["digest"]).display(),
            root.display()
        );
        run_ok(Command::new("bash").args(["-o", "pipefail", "-c", &cmd]));
    }
}

/// Permission bits (`mode & 0o7777`) of every non-symlink entry under `root`.
pub fn modes(root: &Path) -> BTreeMap<String, u32> {
    snapshot(root)
        .into_iter()
        .filter(|(_, n)| !matches!(n, Node::Symlink(_)))
        .map(|(p, _)| {
            let m = fs::symlink_metadata(root.join(&p)).expect("lstat");
            (p, m.permissions().mode() & 0o7777)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// DEST listings, peak memory, scratch file systems

/// A full listing of `root` for "byte-for-byte as before" checks: every entry (not following
/// symlinks) as `d <mode>`, `f <mode> <size> <blake3>` or `l <target>`, keyed by relative path;
/// the root itself under `"."` (`absent` when it does not exist).
pub fn listing(root: &Path) -> BTreeMap<String, String> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for e in rd {
            let p = e.expect("dir entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            out.insert(rel, entry(&p));
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                go(root, &p, out);
            }
        }
    }
    fn entry(p: &Path) -> String {
        let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
        let mode = m.permissions().mode() & 0o7777;
        if m.file_type().is_symlink() {
            format!("l {}", fs::read_link(p).expect("readlink").display())
        } else if m.is_dir() {
            format!("d {mode:o}")
        } else {
            let bytes = fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            format!(
                "f {mode:o} {} {}",
                m.len(),
                bundle::FileHash::of(&bytes).hex()
            )
        }
    }
    let mut out = BTreeMap::new();
    if fs::symlink_metadata(root).is_err() {
        out.insert(".".to_string(), "absent".to_string());
        return out;
    }
    out.insert(".".to_string(), entry(root));
    // The root is followed if it is a symlink (DEST/current), its entries are not.
    if fs::metadata(root).is_ok_and(|m| m.is_dir()) {
        go(root, root, &mut out);
    }
    out
}

/// Panic with the differences unless two [`listing`]s are equal.
pub fn assert_listing_eq(
    what: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("gone    {k} ({v})")),
            Some(a) if a != v => diffs.push(format!("changed {k}: {v} -> {a}")),
            _ => {}
        }
    }
    for (k, v) in after {
        if !before.contains_key(k) {
            diffs.push(format!("new     {k} ({v})"));
        }
    }
    diffs.truncate(30);
    panic!("{what}: not byte-for-byte as before:\n{}", diffs.join("\n"));
}

/// Run `cmd` to completion and return its output and its peak resident set size in KiB, as the
/// kernel accounted it (`wait4`'s `ru_maxrss` for that child alone).
#[allow(unsafe_code)]
pub fn run_measured(cmd: &mut Command) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    let child = cmd
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: wait4 writes the status into `status` and a whole rusage into `ru`; `pid` is our
    // child, not yet waited for (std's Child is dropped without waiting).
    let rc = unsafe { libc::wait4(pid, &mut status, 0, ru.as_mut_ptr()) };
    assert_eq!(rc, pid, "wait4: {}", std::io::Error::last_os_error());
    // SAFETY: filled by the successful wait4 above (and zeroed before it).
    let ru = unsafe { ru.assume_init() };
    drop(child);
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.rewind().expect("rewind");
        f.read_to_end(&mut v).expect("read output");
        v
    };
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: read(out),
        stderr: read(err),
    };
    (output, ru.ru_maxrss.max(0) as u64)
}

/// A file system mounted for a test (a small tmpfs, a read-only bind mount); unmounted on drop.
/// Needs root (`scripts/test` runs as root here); fails the test with a clear message otherwise.
pub struct Mount {
    path: PathBuf,
}

impl Mount {
    /// A tmpfs of `size` (e.g. `"1m"`) at `path` (created).
    pub fn tmpfs(path: &Path, size: &str) -> Mount {
        fs::create_dir_all(path).expect("mkdir mount point");
        Mount::run(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            path,
        );
        Mount {
            path: path.to_path_buf(),
        }
    }

    /// `path` bind-mounted onto itself, read-only.
    pub fn read_only(path: &Path) -> Mount {
        Mount::run(&["--bind"], path);
        let m = Mount {
            path: path.to_path_buf(),
        };
        let p = path.to_string_lossy().into_owned();
        let ok = Command::new("mount")
            .args(["-o", "remount,bind,ro", &p])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot remount {p} read-only");
        m
    }

    fn run(args: &[&str], path: &Path) {
        let mut c = Command::new("mount");
        c.args(args);
        if args == ["--bind"] {
            c.arg(path);
        }
        c.arg(path);
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
        assert!(
            out.status.success(),
            "mount {args:?} {} failed (this test needs root to mount a file system): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Stdout and stderr of a run, as one string (for greps).
pub fn all_output(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
