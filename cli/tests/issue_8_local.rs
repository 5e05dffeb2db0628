//! Issue 8, the local side: what the store, build, extract and the local filesystem do with
//! hostile or unlucky conditions. Every test runs the real `sitebundle` binary; the filesystem
//! limits are real ones (a tmpfs that fills up, a loop-mounted ext4, uid 65534), so these tests
//! need root, as `scripts/test` and CI have, and say so loudly when they do not have it.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

/// (exit code, stdout, stderr) of a finished command.
fn outcome(c: &mut assert_cmd::Command) -> (Option<i32>, String, String) {
    let out = c.output().expect("run sitebundle");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- item 9: directory targets readable by a web server ------------------------------------

/// Under umask 022, everything `push` writes to a `file://` target, and everything `build`
/// writes to the store, is 0644 (directories 0755), and uid 65534 (a web server's worker) can
/// read each of them. `index.json` and `channels/*.json` were 0600 before.
#[test]
fn issue_8_9_dir_target_files_follow_the_umask() {
    require_root("reading as uid 65534");
    let work = tempfile::tempdir().expect("tempdir");
    // tempdirs are 0700; the web server must be able to reach the target.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = work.path().join("store");
    let site = work.path().join("site");
    sample_site(&site);
    let out = sb_umask(&home, "022")
        .args(["build", "--tag", "v1"])
        .arg(&site)
        .output()
        .expect("build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = work.path().join("origin");
    let url = format!("file://{}", target.display());
    for ch in ["staging", "prod"] {
        let out = sb_umask(&home, "022")
            .args(["push", "v1", "--to", &url, "--channel", ch])
            .output()
            .expect("push");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = sb_umask(&home, "022")
        .args(["export", "v1", "-o"])
        .arg(work.path().join("site.tar"))
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut checked = Vec::new();
    for (root, what) in [(&target, "file:// target"), (&home, "store")] {
        let m = modes(root);
        for must in ["index.json", "oci-layout"] {
            assert!(m.contains_key(must), "{what} has no {must}: {m:?}");
        }
        for (rel, mode) in &m {
            let p = root.join(rel);
            let is_dir = p.is_dir();
            let want = if is_dir { 0o755 } else { 0o644 };
            assert_eq!(
                *mode, want,
                "{what}: {rel} is {mode:o}, not {want:o} under umask 022"
            );
            if !is_dir && !rel.ends_with(".lock") {
                let (ok, _) = as_nobody(&["cat", p.to_str().expect("utf-8 path")]);
                assert!(ok, "uid 65534 cannot read {what} file {rel}");
                checked.push(rel.clone());
            }
        }
    }
    for must in ["channels/prod.json", "channels/staging.json"] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} not checked: {checked:?}"
        );
    }
    assert!(
        checked.iter().any(|c| c.starts_with("history/prod/")),
        "{checked:?}"
    );
    let tar_mode = fs::metadata(work.path().join("site.tar"))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(tar_mode, 0o644, "exported archive is {tar_mode:o}");
    // And umask 077 is followed too: the user's choice, not ours.
    let private = work.path().join("private");
    let out = sb_umask(&home, "077")
        .args([
            "push",
            "v1",
            "--to",
            &format!("file://{}", private.display()),
            "--channel",
            "prod",
        ])
        .output()
        .expect("push");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = modes(&private);
    assert_eq!(m.get("channels/prod.json"), Some(&0o600), "{m:?}");
}

// ---- item 12: linear-time --exclude ---------------------------------------------------------

/// A pattern of many stars against long names: the old backtracking matcher needed time
/// exponential in the number of stars (21 s for 7; this one has 14). The build runs under a CPU
/// limit (RLIMIT_CPU, the kernel's accounting, not a wall-clock timer) 1000 times what a linear
/// matcher needs, so the old matcher is killed by SIGXCPU and the test fails.
#[test]
fn issue_8_12_many_star_exclude_is_linear() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = tempfile::tempdir().expect("tempdir");
    let long = "a".repeat(120);
    write(site.path(), &format!("{long}.html"), b"kept\n");
    write(site.path(), &format!("deep/{long}/x{long}b"), b"excluded\n");
    write(site.path(), "index.html", b"home\n");
    let stars = "*a".repeat(14);
    let out = Command::new("prlimit")
        .arg("--cpu=20")
        .arg(bin_path())
        .args(["build", "--tag", "x", "--exclude"])
        .arg(format!("{stars}b"))
        .args(["--exclude", &format!("**/{stars}*b/**")])
        .arg(site.path())
        .env("SITEBUNDLE_HOME", home.path())
        .output()
        .expect("run prlimit sitebundle build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "build failed or was killed: {:?} {stderr}",
        out.status
    );
    let (_, ls, _) = outcome(sb(home.path()).args(["ls", "x"]));
    assert!(ls.contains(&format!("{long}.html")), "{ls}");
    assert!(ls.contains("index.html"), "{ls}");
    assert!(
        !ls.contains(&format!("x{long}b")),
        "excluded file was bundled: {ls}"
    );
}
