//! Issue 8 item 1: a symlink must stay inside the site when resolved *through the bundle's other
//! links*, not only lexically. `verify`, `extract`, `ls` and `import` of a bundle whose digests are
//! all right but whose links escape, dangle or loop must refuse it (exit 3) and write nothing;
//! `build` must refuse such a site on disk.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use bundle::Store;
use common::*;
use testkit::craft::*;

const BODY: &[u8] = b"<p>site</p>\n";

/// A bad-link case: tag, the links (path, target) beside `a.html`, and words the error must say.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

fn code_and_err(home: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = sb(home).args(args).output().expect("run sitebundle");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every reader of the store refuses `tag` with exit 3, naming `name`, and extracts nothing.
fn refused_by_every_reader(home: &Path, work: &Path, tag: &str, name: &str) {
    for cmd in [
        &["verify", tag][..],
        &["ls", tag][..],
        &["inspect", tag][..],
    ] {
        let (code, err) = code_and_err(home, cmd);
        assert_eq!(code, Some(3), "{cmd:?}: {err}");
        assert!(err.contains(name), "{cmd:?} does not name {name}: {err}");
        assert!(err.lines().any(|l| l.starts_with("hint: ")), "{err}");
    }
    let dest = work.join(format!("out-{tag}"));
    let (code, err) = code_and_err(home, &["extract", tag, &dest.to_string_lossy()]);
    assert_eq!(code, Some(3), "extract: {err}");
    assert!(!dest.exists(), "extract created {}", dest.display());
    assert!(staging_leftovers(work, &format!("out-{tag}")).is_empty());
}

#[test]
fn issue_8_symlink_escape_through_a_link_to_the_root_is_refused_by_readers() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let (index, tars) = escape_through_root_link();
    craft_tagged(&store, &index, &tars, "passwd");
    refused_by_every_reader(home.path(), work.path(), "passwd", "passwd");
    let (_, err) = code_and_err(home.path(), &["verify", "passwd"]);
    assert!(err.contains("points outside the site"), "{err}");
}

#[test]
fn issue_8_symlink_escape_is_refused_by_import() {
    // The forged bundle travels as an oci-archive (a tar of the layout); import must refuse it
    // and leave the receiving store as it was.
    let src = tempfile::tempdir().expect("tempdir");
    let store = Store::open(src.path()).expect("store");
    let (index, tars) = escape_through_root_link();
    craft_tagged(&store, &index, &tars, "passwd");
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("evil.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(src.path())
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .expect("run tar");
    assert!(st.success());
    let dst = tempfile::tempdir().expect("tempdir");
    Store::open(dst.path()).expect("store");
    let before = fs::read(dst.path().join("index.json")).expect("index.json");
    let (code, err) = code_and_err(dst.path(), &["import", &archive.to_string_lossy()]);
    assert_eq!(code, Some(3), "import: {err}");
    assert!(err.contains("passwd"), "{err}");
    assert_eq!(
        fs::read(dst.path().join("index.json")).expect("index.json"),
        before,
        "import recorded the forged bundle"
    );
    // ... and left none of its blobs behind (nor a temporary file).
    let left: Vec<_> = fs::read_dir(dst.path().join("blobs/sha256"))
        .expect("blobs dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "a refused import left {left:?} in the store"
    );
}

#[test]
fn issue_8_dangling_looping_and_through_file_links_are_refused_by_readers() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let cases: [Case; 4] = [
        ("dangling", &[("b.html", "missing.html")], "does not exist"),
        ("loop", &[("x", "y"), ("y", "x")], "loops"),
        ("self", &[("x", "x")], "loops"),
        ("through-file", &[("b", "a.html/x")], "regular file"),
    ];
    for (tag, links, why) in cases {
        let mut lines = vec![idx_file("a.html", BODY, 1)];
        lines.extend(links.iter().map(|(p, t)| idx_link(p, t)));
        let l0: Vec<M> = links.iter().map(|(p, t)| symlink(p, t)).collect();
        craft_tagged(
            &store,
            &index_text(&lines),
            &[tar(&l0), tar(&[file("a.html", BODY)])],
            tag,
        );
        refused_by_every_reader(home.path(), work.path(), tag, links[0].0);
        let (_, err) = code_and_err(home.path(), &["verify", tag]);
        assert!(err.contains(why), "{tag}: {err}");
    }
}

#[test]
fn issue_8_links_through_links_that_stay_inside_are_accepted() {
    // The control: a link to the root, a link through it, and `..` after a directory link, all
    // resolving inside, extract to exactly those links.
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let lines = vec![
        idx_dir("deep"),
        idx_dir("deep/er"),
        idx_file("deep/er/page.html", BODY, 1),
        idx_link("deep/er/up", "../.."),
        idx_link("home.html", "deep/er/up/deep/er/page.html"),
        idx_dir("x"),
        idx_link("x/sib.html", "to-deep/../er/page.html"),
        idx_link("x/to-deep", "../deep/er"),
    ];
    let l0 = vec![
        dir("deep"),
        dir("deep/er"),
        symlink("deep/er/up", "../.."),
        symlink("home.html", "deep/er/up/deep/er/page.html"),
        dir("x"),
        symlink("x/sib.html", "to-deep/../er/page.html"),
        symlink("x/to-deep", "../deep/er"),
    ];
    craft_tagged(
        &store,
        &index_text(&lines),
        &[tar(&l0), tar(&[file("deep/er/page.html", BODY)])],
        "ok",
    );
    let (code, err) = code_and_err(home.path(), &["verify", "ok"]);
    assert_eq!(code, Some(0), "{err}");
    let dest = work.path().join("out");
    let (code, err) = code_and_err(home.path(), &["extract", "ok", &dest.to_string_lossy()]);
    assert_eq!(code, Some(0), "{err}");
    for l in ["home.html", "x/sib.html"] {
        assert_eq!(
            fs::read(dest.join(l)).expect("read through link"),
            BODY,
            "{l}"
        );
    }
}

#[test]
fn issue_8_build_refuses_a_site_whose_link_escapes_through_another_link() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    write(&site, "index.html", BODY);
    fs::create_dir_all(site.join("a/b/c/d/e/f")).expect("mkdir");
    std::os::unix::fs::symlink("../../../../../..", site.join("a/b/c/d/e/f/up")).expect("ln");
    std::os::unix::fs::symlink(
        "a/b/c/d/e/f/up/../../../../../../../etc/passwd",
        site.join("passwd"),
    )
    .expect("ln");
    let (code, err) = code_and_err(home.path(), &["build", &site.to_string_lossy()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("passwd"), "{err}");
    assert_store_untouched(home.path());
    // --drop-bad-symlinks leaves the bad link out and keeps the good one.
    let (code, err) = code_and_err(
        home.path(),
        &[
            "build",
            &site.to_string_lossy(),
            "--drop-bad-symlinks",
            "--tag",
            "t",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let out = sb(home.path()).args(["ls", "t"]).output().expect("ls");
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(ls.contains("a/b/c/d/e/f/up"), "{ls}");
    assert!(!ls.contains("passwd"), "{ls}");
}

#[test]
fn issue_8_drop_bad_symlinks_also_drops_links_through_dropped_ones() {
    // `a -> ../site/x.html` is lexically outside (dropped) though it resolves inside on disk;
    // `b -> a` resolves on disk, but not through the bundle once `a` is gone: dropped as well.
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let site = work.path().join("site");
    write(&site, "x.html", BODY);
    std::os::unix::fs::symlink("../site/x.html", site.join("a")).expect("ln");
    std::os::unix::fs::symlink("a", site.join("b")).expect("ln");
    let (code, err) = code_and_err(
        home.path(),
        &[
            "build",
            &site.to_string_lossy(),
            "--drop-bad-symlinks",
            "--tag",
            "t",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let out = sb(home.path()).args(["ls", "t"]).output().expect("ls");
    let ls = String::from_utf8_lossy(&out.stdout);
    assert!(
        ls.contains("x.html") && !ls.contains("\ta\n") && !ls.contains(" b"),
        "{ls}"
    );
    let (code, err) = code_and_err(home.path(), &["verify", "t"]);
    assert_eq!(code, Some(0), "{err}");
}

/// Run the spec's independent reader (spec/reference/read_bundle.py) on `tag` of `home`.
fn reference_reader(home: &Path, tag: &str) -> (Option<i32>, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/reference/read_bundle.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(home)
        .arg(tag)
        .output()
        .expect("run python3 (scripts/test installs its blake3 module)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn issue_8_reference_reader_resolves_links_as_the_spec_says() {
    // The spec's second implementation agrees with ours on every case above.
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let (index, tars) = escape_through_root_link();
    craft_tagged(&store, &index, &tars, "passwd");
    let bad: [Case; 3] = [
        ("dangling", &[("b.html", "missing.html")], "does not exist"),
        ("loop", &[("x", "y"), ("y", "x")], "loops"),
        ("through-file", &[("b", "a.html/x")], "regular file"),
    ];
    for (tag, links, _) in bad {
        let mut lines = vec![idx_file("a.html", BODY, 1)];
        lines.extend(links.iter().map(|(p, t)| idx_link(p, t)));
        let l0: Vec<M> = links.iter().map(|(p, t)| symlink(p, t)).collect();
        craft_tagged(
            &store,
            &index_text(&lines),
            &[tar(&l0), tar(&[file("a.html", BODY)])],
            tag,
        );
    }
    let (code, err) = reference_reader(home.path(), "passwd");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("points outside the site"), "{err}");
    for (tag, _, why) in bad {
        let (code, err) = reference_reader(home.path(), tag);
        assert_eq!(code, Some(1), "{tag}: {err}");
        assert!(err.contains(why), "{tag}: {err}");
    }
    // And accepts links through links that stay inside.
    craft_tagged(
        &store,
        &index_text(&[
            idx_dir("d"),
            idx_file("d/a.html", BODY, 1),
            idx_link("d/up", ".."),
            idx_link("home.html", "d/up/d/a.html"),
        ]),
        &[
            tar(&[
                dir("d"),
                symlink("d/up", ".."),
                symlink("home.html", "d/up/d/a.html"),
            ]),
            tar(&[file("d/a.html", BODY)]),
        ],
        "ok",
    );
    let (code, err) = reference_reader(home.path(), "ok");
    assert_eq!(code, Some(0), "{err}");
}
