//! The bundle id printed by `sitebundle build` depends on content only (issue 3): not on
//! `RAYON_NUM_THREADS`, the umask the site was written under, creation order or mtimes, nor on the
//! build cache. And `extract` writes exact modes whatever the umask.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use common::*;

/// Copy `src` to `dst` in a child shell whose umask is `umask` (`cp -R` without `-p`: new
/// files get the source mode filtered by the umask, new mtimes, and `cp`'s creation order).
fn copy_under_umask(src: &Path, dst: &Path, umask: &str) {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask {umask} && cp -R '{}' '{}'",
            src.display(),
            dst.display()
        ))
        .status()
        .expect("run sh");
    assert!(st.success(), "cp under umask {umask}");
}

fn build_with(home: &Path, dir: &Path, threads: &str) -> String {
    let out = sb(home)
        .env("RAYON_NUM_THREADS", threads)
        .arg("build")
        .arg(dir)
        .arg("--no-cache")
        .output()
        .expect("run build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    last_line(&out.stdout)
}

fn rich_site(root: &Path) {
    sample_site(root);
    for i in 0..40u64 {
        let size = (i as usize * 4099) % 150_000;
        write(root, &format!("gen/p{i:02}/page.html"), &noise(i % 7, size));
    }
    write(root, "unicode/日本語/ページ.html", b"<p>ja</p>");
    write(root, "unicode/emoji-\u{1F600}.txt", b"smile");
}

#[test]
fn id_ignores_threads_umask_order_mtime_and_cache() {
    let t = tempfile::tempdir().expect("tempdir");
    let src = t.path().join("src");
    rich_site(&src);
    let mut ids = Vec::new();
    for (k, (umask, threads)) in [("022", "1"), ("077", "2"), ("002", "4"), ("027", "3")]
        .iter()
        .enumerate()
    {
        let copy = t.path().join(format!("copy-{k}"));
        copy_under_umask(&src, &copy, umask);
        // Different mtimes per copy, on every file.
        let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000 + k as u64 * 86_400);
        for (path, node) in snapshot(&copy) {
            if matches!(node, Node::File { .. }) {
                let f = fs::File::options()
                    .write(true)
                    .open(copy.join(&path))
                    .expect("open");
                f.set_modified(stamp).expect("set mtime");
            }
        }
        let home = t.path().join(format!("home-{k}"));
        let id = build_with(&home, &copy, threads);
        eprintln!("umask {umask}, RAYON_NUM_THREADS={threads}: {id}");
        ids.push(id);
    }
    // The source itself, twice into one store: cold, then warm cache.
    let home = t.path().join("home-src");
    let cold = build(&home, &src, &[]);
    let warm = build(&home, &src, &[]);
    ids.push(cold);
    ids.push(warm);
    assert!(ids[0].starts_with("sha256:"), "{ids:?}");
    assert!(ids.iter().all(|i| i == &ids[0]), "ids differ: {ids:?}");
}

#[test]
fn extract_sets_exact_modes_under_any_umask() {
    let t = tempfile::tempdir().expect("tempdir");
    let site = t.path().join("site");
    rich_site(&site);
    let home = t.path().join("home");
    let id = build(&home, &site, &[]);
    let dest = t.path().join("out");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "umask 077 && exec '{}' extract '{id}' '{}'",
            bin_path().display(),
            dest.display()
        ))
        .env("SITEBUNDLE_HOME", &home)
        .status()
        .expect("run extract");
    assert!(st.success());
    let mode = |p: &str| {
        fs::symlink_metadata(dest.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("index.html"), 0o644);
    assert_eq!(mode("bin/hook.sh"), 0o755);
    assert_eq!(mode("docs"), 0o755);
    assert_eq!(mode("empty"), 0o755);
    assert_eq!(snapshot(&dest), snapshot(&site));
}
