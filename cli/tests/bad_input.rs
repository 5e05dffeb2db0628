//! Bad input to `sitebundle build` (issue 3): each case must exit 1, name the path, print a
//! `hint:` line, and leave the store without any blob or manifest. (An unreadable file or
//! directory is a local I/O error since issue 8: exit 6.)

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// What a refused build printed.
struct Refusal {
    stderr: String,
}

/// Run `build DIR` (plus `extra` args), expect exit 1 and an untouched store.
fn refused(home: &Path, dir: &Path, extra: &[&str]) -> Refusal {
    let out = sb(home)
        .arg("build")
        .arg(dir)
        .args(extra)
        .output()
        .expect("run sitebundle build");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 for {}; stderr:\n{stderr}",
        dir.display()
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hint: ") && l.len() > 10),
        "no hint line in:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("error: ")),
        "first line is not an error: {stderr}"
    );
    assert_store_untouched(home);
    Refusal { stderr }
}

fn site_with(f: impl FnOnce(&Path)) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), "index.html", b"<h1>ok</h1>\n");
    write(t.path(), "a/page.html", b"<p>page</p>\n");
    f(t.path());
    t
}

#[test]
fn symlink_pointing_outside_relative_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| {
        std::os::unix::fs::symlink("../../../../../../etc/passwd", r.join("a/up.html"))
            .expect("symlink")
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("a/up.html"), "{}", r.stderr);
    assert!(r.stderr.contains("outside the site"), "{}", r.stderr);
    assert!(
        r.stderr.contains("--exclude"),
        "hint names the flag: {}",
        r.stderr
    );
}

#[test]
fn symlink_escaping_through_a_sibling_is_refused() {
    // Lexically inside for one step, then out: `a/x -> ../../outside`.
    let home = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    write(outside.path(), "secret.txt", b"secret");
    let site = site_with(|r| {
        let rel = format!(
            "../../{}/secret.txt",
            outside.path().file_name().expect("name").to_string_lossy()
        );
        std::os::unix::fs::symlink(rel, r.join("a/x.txt")).expect("symlink")
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("a/x.txt"), "{}", r.stderr);
}

#[test]
fn absolute_symlink_is_refused_even_when_it_points_inside() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|_| {});
    let target = site.path().join("index.html");
    std::os::unix::fs::symlink(&target, site.path().join("abs.html")).expect("symlink");
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("abs.html"), "{}", r.stderr);
    assert!(r.stderr.contains("absolute"), "{}", r.stderr);
}

#[test]
fn absolute_symlink_to_etc_passwd_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site =
        site_with(|r| std::os::unix::fs::symlink("/etc/passwd", r.join("pw")).expect("symlink"));
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("pw -> /etc/passwd"), "{}", r.stderr);
}

#[test]
fn dangling_symlink_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| {
        std::os::unix::fs::symlink("nope.html", r.join("a/dangling.html")).expect("symlink")
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("a/dangling.html"), "{}", r.stderr);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn bad_symlinks_are_accepted_only_with_the_documented_flags() {
    // The hint's two ways out really work: --exclude PATH and --drop-bad-symlinks.
    let home = tempfile::tempdir().expect("tempdir");
    let site =
        site_with(|r| std::os::unix::fs::symlink("/etc/passwd", r.join("pw")).expect("symlink"));
    let a = build(home.path(), site.path(), &["--exclude", "pw"]);
    let b = build(home.path(), site.path(), &["--drop-bad-symlinks"]);
    assert_eq!(a, b, "both leave out the same link");
    let out = sb(home.path()).args(["ls", &a]).output().expect("ls");
    assert!(out.status.success());
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(ls.contains("index.html") && !ls.contains("pw"), "{ls}");
}

#[test]
fn fifo_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| {
        let st = std::process::Command::new("mkfifo")
            .arg(r.join("a/pipe"))
            .status()
            .expect("run mkfifo");
        assert!(st.success(), "mkfifo");
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("a/pipe"), "{}", r.stderr);
    assert!(r.stderr.contains("fifo"), "{}", r.stderr);
}

#[test]
fn unix_socket_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|_| {});
    let _listener =
        std::os::unix::net::UnixListener::bind(site.path().join("a/sock")).expect("bind socket");
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("a/sock"), "{}", r.stderr);
    assert!(r.stderr.contains("socket"), "{}", r.stderr);
}

#[test]
fn non_utf8_name_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| {
        let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name.html");
        fs::write(r.join("a").join(name), b"x").expect("write non-UTF-8 name");
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("bad-"), "{}", r.stderr);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
}

#[test]
fn names_differing_only_by_normalization_are_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let nfc = "caf\u{e9}.html";
    let nfd = "cafe\u{301}.html";
    let site = site_with(|r| {
        write(r, &format!("u/{nfc}"), b"nfc");
        write(r, &format!("u/{nfd}"), b"nfd");
    });
    let r = refused(home.path(), site.path(), &[]);
    assert!(
        r.stderr.contains(&format!("u/{nfc}")) && r.stderr.contains(&format!("u/{nfd}")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("normalization"), "{}", r.stderr);
    // And the documented way out: exclude one of the two.
    let id = build(
        home.path(),
        site.path(),
        &["--exclude", &format!("u/{nfd}")],
    );
    assert!(id.starts_with("sha256:"), "{id}");
}

#[test]
fn missing_dir_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let t = tempfile::tempdir().expect("tempdir");
    let missing = t.path().join("no-such-site");
    let r = refused(home.path(), &missing, &[]);
    assert!(r.stderr.contains("no-such-site"), "{}", r.stderr);
}

#[test]
fn file_instead_of_dir_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let t = tempfile::tempdir().expect("tempdir");
    write(t.path(), "index.html", b"x");
    let r = refused(home.path(), &t.path().join("index.html"), &[]);
    assert!(r.stderr.contains("index.html"), "{}", r.stderr);
}

#[test]
fn empty_dir_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = tempfile::tempdir().expect("tempdir");
    let r = refused(home.path(), site.path(), &[]);
    let name = site.path().file_name().expect("name").to_string_lossy();
    assert!(r.stderr.contains(&*name), "{}", r.stderr);
    assert!(r.stderr.contains("no files"), "{}", r.stderr);
}

#[test]
fn dir_with_only_empty_dirs_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(site.path().join("a/b/c")).expect("mkdir");
    let r = refused(home.path(), site.path(), &[]);
    assert!(r.stderr.contains("no files"), "{}", r.stderr);
}

/// Make `p` and its contents usable by any user (tempdirs are created 0700).
fn open_up(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn unreadable_file_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| write(r, "a/secret.html", b"<p>secret</p>\n"));
    open_up(site.path(), 0o755);
    open_up(&site.path().join("a"), 0o755);
    open_up(&site.path().join("a/secret.html"), 0o000);
    open_up(home.path(), 0o777);
    let out = if euid() == 0 {
        // root reads anything: run as nobody, with a store it can write.
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path())
            .arg("build")
            .arg(site.path())
            .env("SITEBUNDLE_HOME", home.path());
        c.output().expect("run setpriv sitebundle build")
    } else {
        sb(home.path())
            .arg("build")
            .arg(site.path())
            .output()
            .expect("run sitebundle build")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "stderr:\n{stderr}");
    assert!(stderr.contains("a/secret.html"), "{stderr}");
    assert!(stderr.contains("ermission denied"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
    assert_store_untouched(home.path());
}

#[test]
fn unreadable_directory_is_refused() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|r| write(r, "locked/page.html", b"<p>x</p>\n"));
    open_up(site.path(), 0o755);
    open_up(&site.path().join("a"), 0o755);
    open_up(&site.path().join("locked"), 0o000);
    open_up(home.path(), 0o777);
    let out = if euid() == 0 {
        std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin_path())
            .arg("build")
            .arg(site.path())
            .env("SITEBUNDLE_HOME", home.path())
            .output()
            .expect("run setpriv sitebundle build")
    } else {
        sb(home.path())
            .arg("build")
            .arg(site.path())
            .output()
            .expect("run sitebundle build")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Let the tempdir be removed.
    open_up(&site.path().join("locked"), 0o755);
    assert_eq!(out.status.code(), Some(6), "stderr:\n{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
    assert_store_untouched(home.path());
}

#[test]
fn invalid_tag_is_refused_before_anything_is_written() {
    let home = tempfile::tempdir().expect("tempdir");
    let site = site_with(|_| {});
    let out = sb(home.path())
        .arg("build")
        .arg(site.path())
        .args(["--tag", "bad tag!"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad tag!"));
    assert_store_untouched(home.path());
}

/// A reader that goes away (`sitebundle inspect | head`, a pager that quit) ends every printing
/// command quietly with exit 0; std's `println!` used to panic with "failed printing to
/// stdout: Broken pipe" and exit 101.
#[test]
fn stdout_closed_by_the_reader_ends_quietly_not_with_a_panic() {
    use std::process::Stdio;
    let home = tempfile::tempdir().expect("tempdir");
    let site = tempfile::tempdir().expect("tempdir");
    sample_site(site.path());
    let id = build(home.path(), site.path(), &["--tag", "t"]);
    for args in [
        vec!["inspect", "t"],
        vec!["inspect", "--json", "t"],
        vec!["ls", "t"],
        vec!["list"],
        vec!["verify", "t"],
        vec!["diff", id.as_str(), "t"],
    ] {
        let mut child = std::process::Command::new(bin_path())
            .env("SITEBUNDLE_HOME", home.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sitebundle");
        // Close the read end before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}
