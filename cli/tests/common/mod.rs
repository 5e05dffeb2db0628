//! Helpers shared by the CLI tests: a per-test store, the binary, tree snapshots, store checks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// The `sitebundle` binary with `SITEBUNDLE_HOME` set to `home`.
pub fn sb(home: &Path) -> Command {
    let mut c = Command::cargo_bin("sitebundle").expect("the sitebundle binary is built");
    c.env("SITEBUNDLE_HOME", home)
        .env_remove("RAYON_NUM_THREADS");
    c
}

/// Path of the binary (for running it under `setpriv`).
pub fn bin_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("sitebundle")
}

/// Run `sitebundle build DIR --tag TAG` and return the bundle id (last stdout line).
pub fn build(home: &Path, dir: &Path, extra: &[&str]) -> String {
    let out = sb(home)
        .arg("build")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run sitebundle build");
    assert!(
        out.status.success(),
        "build {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    last_line(&out.stdout)
}

/// The last non-empty line of some output.
pub fn last_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What a tree entry is, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Directory.
    Dir,
    /// Regular file: its bytes' BLAKE3 and whether any execute bit is set.
    File { hash: String, len: u64, exec: bool },
    /// Symlink and its target.
    Symlink(String),
}

/// Every entry under `root` (not following symlinks), keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let e = e.expect("dir entry");
        let p = e.path();
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
            walk(root, &p, out);
        } else {
            let bytes = fs::read(&p).expect("read file");
            out.insert(
                rel,
                Node::File {
                    hash: blake3::hash(&bytes).to_hex().to_string(),
                    len: bytes.len() as u64,
                    exec: md.permissions().mode() & 0o111 != 0,
                },
            );
        }
    }
}

/// Every file name in the store's blob directory (finished blobs and temporaries).
pub fn blob_files(home: &Path) -> Vec<String> {
    let dir = home.join("blobs/sha256");
    match fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The manifests listed in the store's `index.json` (empty when there is no store).
pub fn manifests(home: &Path) -> Vec<serde_json::Value> {
    match fs::read(home.join("index.json")) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).expect("index.json is JSON");
            v["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// Fail unless the store holds no blob, no temporary and no manifest.
pub fn assert_store_untouched(home: &Path) {
    let blobs = blob_files(home);
    assert!(blobs.is_empty(), "store got blobs: {blobs:?}");
    let m = manifests(home);
    assert!(m.is_empty(), "store got manifests: {m:?}");
}

/// Names in `parent` that look like extraction staging directories for `name`.
pub fn staging_leftovers(parent: &Path, name: &str) -> Vec<String> {
    let prefix = format!(".{name}.sitebundle-");
    fs::read_dir(parent)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Write a file, creating its parent directories.
pub fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).expect("mkdir -p");
    }
    fs::write(&p, bytes).expect("write file");
}

/// Pseudo-random bytes (xorshift), so tests need no extra crate and stay reproducible.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A small valid site with text and binary files, a duplicate, an executable and an inside link.
pub fn sample_site(root: &Path) {
    write(root, "index.html", b"<html><body>home</body></html>\n");
    write(root, "docs/a.html", b"<p>a</p>\n");
    write(root, "docs/b.html", b"<p>a</p>\n");
    write(root, "css/site.css", b"body{margin:0}\n");
    write(root, "img/photo.png", &noise(1, 300 * 1024));
    write(root, "img/logo.png", &noise(2, 40 * 1024));
    write(root, "bin/hook.sh", b"#!/bin/sh\necho hi\n");
    fs::set_permissions(root.join("bin/hook.sh"), fs::Permissions::from_mode(0o755))
        .expect("chmod");
    fs::create_dir_all(root.join("empty")).expect("mkdir");
    std::os::unix::fs::symlink("../index.html", root.join("docs/home.html")).expect("symlink");
}

/// `sitebundle` run through `sh -c 'umask U; exec ...'`, so every file it creates gets the umask
/// of a real shell session.
pub fn sb_umask(home: &Path, umask: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(bin_path())
        .env("SITEBUNDLE_HOME", home)
        .env_remove("RAYON_NUM_THREADS");
    c
}

/// The effective uid of this test process.
#[allow(unsafe_code)]
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Fail loudly unless the tests run as root: the issue 8 tests mount filesystems (tmpfs, a loop
/// ext4 image) and switch to uid 65534, which need it. CI and `scripts/test` run as root; a
/// silent skip would hide the case the test is for.
pub fn require_root(what: &str) {
    assert_eq!(
        euid(),
        0,
        "{what} needs root (mount, setpriv): run the tests as root, as scripts/test and CI do"
    );
}

/// Run `cmd` as uid/gid 65534 (nobody) with no supplementary groups, as a web server's worker
/// would: returns (exit status success, stdout).
pub fn as_nobody(cmd: &[&str]) -> (bool, Vec<u8>) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(cmd)
        .output()
        .expect("run setpriv (util-linux)");
    (out.status.success(), out.stdout)
}

/// A filesystem mounted for one test, unmounted (lazily, so a failing test cannot leave it
/// busy) when dropped.
pub struct Mount {
    /// Where it is mounted.
    pub dir: tempfile::TempDir,
    image: Option<PathBuf>,
}

impl Mount {
    /// A tmpfs of `size` (as `mount -o size=` takes it, e.g. "2m"): the real ENOSPC.
    pub fn tmpfs(size: &str) -> Mount {
        require_root("mounting a tmpfs");
        let dir = tempfile::tempdir().expect("tempdir");
        run_ok(
            std::process::Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(dir.path()),
        );
        Mount { dir, image: None }
    }

    /// A fresh ext4 filesystem of `mib` MiB in a loop-mounted image file (ext4's real limits:
    /// 65,000 links per inode).
    pub fn ext4(mib: u64, inodes: u64) -> Mount {
        require_root("loop-mounting an ext4 image");
        let image = tempfile::Builder::new()
            .prefix("sitebundle-ext4-")
            .suffix(".img")
            .tempfile()
            .expect("image file")
            .into_temp_path()
            .keep()
            .expect("keep image");
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .expect("open image");
        f.set_len(mib * 1024 * 1024).expect("size image");
        drop(f);
        run_ok(
            std::process::Command::new("mkfs.ext4")
                .args(["-q", "-F", "-N", &inodes.to_string()])
                .arg(&image),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        run_ok(
            std::process::Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(dir.path()),
        );
        Mount {
            dir,
            image: Some(image),
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        if let Some(i) = &self.image {
            let _ = fs::remove_file(i);
        }
    }
}

/// Run a command and fail the test (with its output) unless it succeeds.
pub fn run_ok(c: &mut std::process::Command) -> std::process::Output {
    let out = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every file and directory under `root` with its permission bits (not following symlinks).
pub fn modes(root: &Path) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let md = fs::symlink_metadata(e.path()).expect("lstat");
            let rel = e
                .path()
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            if md.is_dir() {
                stack.push(e.path());
            }
            if !md.file_type().is_symlink() {
                out.insert(rel, md.permissions().mode() & 0o7777);
            }
        }
    }
    out
}
