//! `sitebundle extract` and `verify` on damaged and hostile bundles (issue 3): a layer whose bytes
//! do not match its digest, a truncated layer, a decompression bomb, and hand-made bundles whose
//! tar streams or index carry `..`, absolute paths or symlink-then-write tricks. Each must be
//! refused (exit 3 for integrity failures), write nothing outside DEST, and leave DEST as it was:
//! absent, or with its old contents when it existed and `--replace` was given.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bundle::manifest::{self, Manifest};
use bundle::tar::content_mtime;
use bundle::{Digest, FileHash, Store};
use common::*;
use testkit::craft::*;

/// A store with the sample site built into it under tag `t`.
struct Fixture {
    home: tempfile::TempDir,
    work: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        let site = work.path().join("site");
        sample_site(&site);
        build(home.path(), &site, &["--tag", "t"]);
        let store = Store::open(home.path()).expect("open store");
        Fixture { home, work, store }
    }

    fn manifest(&self, reference: &str) -> (Digest, Manifest) {
        let d = self.store.resolve(reference).expect("resolve");
        let bytes = fs::read(self.store.blob_path(&d)).expect("read manifest blob");
        (d, manifest::parse_manifest(&bytes).expect("parse manifest"))
    }

    /// Path of layer `n`'s blob of the bundle tagged `t`.
    fn layer_path(&self, n: usize) -> PathBuf {
        let (_, m) = self.manifest("t");
        self.store.blob_path(&m.layers[n].digest)
    }

    /// A layer holding file content (not layer 0, which holds directories and the index).
    fn content_layer(&self) -> usize {
        let (_, m) = self.manifest("t");
        assert!(m.layers.len() >= 2, "sample site has content layers");
        m.layers.len() - 1
    }
}

/// What DEST looked like before a refused extraction.
enum Before {
    Absent,
    Tree(BTreeMap<String, Node>),
}

/// DEST cases: absent, or an existing tree replaced with `--replace`.
fn dest_cases(work: &Path) -> Vec<(PathBuf, Before, bool)> {
    let absent = work.join("out-absent");
    let existing = work.join("out-existing");
    write(&existing, "old.html", b"<p>old site</p>\n");
    write(&existing, "keep/me.txt", b"still here");
    let before = snapshot(&existing);
    vec![
        (absent, Before::Absent, false),
        (existing, Before::Tree(before), true),
    ]
}

fn assert_dest_as_before(dest: &Path, before: &Before) {
    match before {
        Before::Absent => assert!(
            fs::symlink_metadata(dest).is_err(),
            "{} was created",
            dest.display()
        ),
        Before::Tree(t) => assert_eq!(&snapshot(dest), t, "{} changed", dest.display()),
    }
    let parent = dest.parent().expect("parent");
    let name = dest.file_name().expect("name").to_string_lossy();
    let left = staging_leftovers(parent, &name);
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

/// Run `extract REF DEST` for every DEST case; expect `code`; return stderr of the last run.
fn extract_refused(home: &Path, work: &Path, reference: &str, code: i32) -> String {
    let mut last = String::new();
    for (dest, before, replace) in dest_cases(work) {
        let mut c = sb(home);
        c.args(["extract", reference]).arg(&dest);
        if replace {
            c.arg("--replace");
        }
        let out = c.output().expect("run extract");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "extract {reference} into {}: stderr:\n{stderr}",
            dest.display()
        );
        assert!(stderr.lines().any(|l| l.starts_with("hint: ")), "{stderr}");
        assert_dest_as_before(&dest, &before);
        last = stderr;
    }
    last
}

fn verify_code(home: &Path, reference: &str) -> (Option<i32>, String) {
    let out = sb(home)
        .args(["verify", reference])
        .output()
        .expect("run verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn untampered_bundle_extracts_and_replaces() {
    // The control for every test below: the same fixture, extracted, gives the site back.
    let f = Fixture::new();
    let site = snapshot(&f.work.path().join("site"));
    for (dest, _, replace) in dest_cases(f.work.path()) {
        let mut c = sb(f.home.path());
        c.args(["extract", "t"]).arg(&dest);
        if replace {
            c.arg("--replace");
        }
        c.assert().success();
        assert_eq!(snapshot(&dest), site);
    }
    let (code, err) = verify_code(f.home.path(), "t");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn recompressed_layer_fails_its_digest() {
    // Same tar content, different zstd bytes: only the blob digest can catch it.
    let f = Fixture::new();
    let n = f.content_layer();
    let p = f.layer_path(n);
    let original = fs::read(&p).expect("read layer");
    let tar = zstd::decode_all(&original[..]).expect("layer decodes");
    let again = zstd::encode_all(&tar[..], 19).expect("recompress");
    assert_ne!(again, original, "recompression changed the bytes");
    fs::write(&p, &again).expect("write tampered layer");
    let err = extract_refused(f.home.path(), f.work.path(), "t", 3);
    assert!(err.contains(&format!("layer {n}")), "{err}");
    let (code, err) = verify_code(f.home.path(), "t");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("expected sha256:"), "{err}");
}

#[test]
fn flipped_byte_in_layer_is_refused() {
    let f = Fixture::new();
    let p = f.layer_path(f.content_layer());
    let mut b = fs::read(&p).expect("read layer");
    let mid = b.len() / 2;
    b[mid] ^= 0x55;
    fs::write(&p, &b).expect("write tampered layer");
    extract_refused(f.home.path(), f.work.path(), "t", 3);
    assert_eq!(verify_code(f.home.path(), "t").0, Some(3));
}

#[test]
fn flipped_byte_in_layer0_trailer_is_refused() {
    // The index trailer is part of layer 0's blob digest.
    let f = Fixture::new();
    let p = f.layer_path(0);
    let mut b = fs::read(&p).expect("read layer");
    let at = b.len() - 40; // inside the index frame, before the 32-byte footer
    b[at] ^= 0x01;
    fs::write(&p, &b).expect("write tampered layer");
    extract_refused(f.home.path(), f.work.path(), "t", 3);
}

#[test]
fn truncated_layer_is_refused() {
    let f = Fixture::new();
    let p = f.layer_path(f.content_layer());
    let b = fs::read(&p).expect("read layer");
    fs::write(&p, &b[..b.len() / 2]).expect("truncate layer");
    let err = extract_refused(f.home.path(), f.work.path(), "t", 3);
    assert!(err.contains("layer"), "{err}");
}

#[test]
fn missing_layer_is_refused() {
    let f = Fixture::new();
    fs::remove_file(f.layer_path(f.content_layer())).expect("rm layer");
    let err = extract_refused(f.home.path(), f.work.path(), "t", 1);
    assert!(err.contains("missing"), "{err}");
}

/// A zstd frame of `total` zero bytes made of RLE blocks: 4 bytes per 128 KiB.
fn zero_bomb(total: u64) -> Vec<u8> {
    const BLOCK: u64 = 128 * 1024;
    let mut v = vec![0x28, 0xB5, 0x2F, 0xFD]; // magic 0xFD2FB528
    v.push(0x00); // frame header: no content size, not single-segment, no checksum
    v.push(7 << 3); // window descriptor: 2^(10+7) = 128 KiB
    let n = total / BLOCK;
    for i in 0..n {
        let last = u32::from(i + 1 == n);
        let header = last | (1 << 1) | ((BLOCK as u32) << 3); // RLE block of BLOCK bytes
        v.extend_from_slice(&header.to_le_bytes()[..3]);
        v.push(0);
    }
    v
}

#[allow(unsafe_code)]
fn children_max_rss_kib() -> i64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialized by the successful call above (and zeroed before it).
    unsafe { ru.assume_init() }.ru_maxrss
}

/// Store `blob` as layer `n` of a copy of the bundle tagged `t` (descriptor digest and size
/// rewritten, so the manifest is self-consistent); tag the copy `tag`.
fn replace_layer(f: &Fixture, n: usize, blob: &[u8], tag: &str) {
    let (_, mut m) = f.manifest("t");
    let d = f.store.put_blob(blob).expect("put blob");
    m.layers[n].digest = d;
    m.layers[n].size = blob.len() as u64;
    let bytes = m.to_bytes();
    let md = f.store.put_blob(&bytes).expect("put manifest");
    f.store
        .add_manifest(md, bytes.len() as u64, m.config.digest, &[tag.to_string()])
        .expect("add manifest");
}

#[test]
fn decompression_bomb_is_refused_quickly_in_bounded_memory() {
    const BOMB: u64 = 16 << 30; // 16 GiB of zeros in ~512 KiB
    let f = Fixture::new();
    let n = f.content_layer();
    let original = fs::read(f.layer_path(n)).expect("read layer");
    // 1. The real layer followed by a bomb frame: a valid tar, then endless zeros.
    let mut after = original.clone();
    after.extend_from_slice(&zero_bomb(BOMB));
    replace_layer(&f, n, &after, "bomb-after");
    // 2. The layer replaced by the bomb alone.
    replace_layer(&f, n, &zero_bomb(BOMB), "bomb-only");
    let t = Instant::now();
    let err = extract_refused(f.home.path(), f.work.path(), "bomb-after", 3);
    assert!(err.contains(&format!("layer {n}")), "{err}");
    extract_refused(f.home.path(), f.work.path(), "bomb-only", 3);
    for tag in ["bomb-after", "bomb-only"] {
        assert_eq!(verify_code(f.home.path(), tag).0, Some(3), "verify {tag}");
    }
    let elapsed = t.elapsed();
    let rss = children_max_rss_kib();
    eprintln!("bomb: refused 6 runs in {elapsed:?}; largest child RSS {rss} KiB");
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?}: the reader decompressed the bomb"
    );
    assert!(rss < 512 * 1024, "a child used {rss} KiB");
}

// ---- hand-made bundles -------------------------------------------------------------------

/// Store a self-consistent bundle (every digest right) from an index and layer tars; tag it.
fn craft(store: &Store, index: &[u8], tars: &[Vec<u8>], tag: &str) {
    craft_tagged(store, index, tars, tag);
}

/// A fresh store and work dir for a hand-made bundle.
fn crafted() -> (tempfile::TempDir, tempfile::TempDir, Store) {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("open store");
    (home, work, store)
}

const BODY: &[u8] = b"<p>hello</p>\n";

#[test]
fn crafted_control_bundle_extracts() {
    // Proves `craft` makes bundles the reader accepts, so the refusals below are about the trick.
    let (home, work, store) = crafted();
    let index = index_text(&[
        idx_dir("d"),
        idx_file("d/a.html", BODY, 1),
        idx_link("l.html", "d/a.html"),
    ]);
    craft(
        &store,
        &index,
        &[
            tar(&[dir("d"), symlink("l.html", "d/a.html")]),
            tar(&[file("d/a.html", BODY)]),
        ],
        "ok",
    );
    let dest = work.path().join("out");
    sb(home.path())
        .args(["extract", "ok"])
        .arg(&dest)
        .assert()
        .success();
    assert_eq!(fs::read(dest.join("d/a.html")).expect("read"), BODY);
    assert_eq!(
        fs::read_link(dest.join("l.html")).expect("readlink"),
        Path::new("d/a.html")
    );
}

#[test]
fn tar_entry_with_dotdot_is_refused() {
    let (home, work, store) = crafted();
    let index = index_text(&[idx_dir("d"), idx_file("d/a.html", BODY, 1)]);
    // The layer writes `d/../../evil.html` instead of what the index lists.
    craft(
        &store,
        &index,
        &[
            tar(&[dir("d")]),
            tar(&[file("d/../../evil.html", BODY), file("d/a.html", BODY)]),
        ],
        "dotdot",
    );
    let err = extract_refused(home.path(), work.path(), "dotdot", 3);
    assert!(err.contains("evil.html"), "{err}");
    assert!(!work.path().join("evil.html").exists());
    assert!(!work.path().parent().expect("p").join("evil.html").exists());
}

#[test]
fn tar_entry_with_absolute_path_is_refused() {
    let (home, work, store) = crafted();
    let target = work.path().join("abs-evil.html");
    let index = index_text(&[idx_dir("d"), idx_file("d/a.html", BODY, 1)]);
    craft(
        &store,
        &index,
        &[
            tar(&[dir("d")]),
            tar(&[file(&target.to_string_lossy(), BODY)]),
        ],
        "abs",
    );
    extract_refused(home.path(), work.path(), "abs", 3);
    assert!(!target.exists(), "wrote through an absolute path");
}

#[test]
fn symlink_then_write_in_layers_is_refused() {
    // The index is honest (d is a directory); the layers make d a link out, then write into it.
    let (home, work, store) = crafted();
    let outside = work.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    let index = index_text(&[idx_dir("d"), idx_file("d/a.html", BODY, 1)]);
    craft(
        &store,
        &index,
        &[
            tar(&[symlink("d", &outside.to_string_lossy())]),
            tar(&[file("d/a.html", BODY)]),
        ],
        "linkwrite",
    );
    extract_refused(home.path(), work.path(), "linkwrite", 3);
    assert!(
        fs::read_dir(&outside).expect("ls").next().is_none(),
        "wrote through the link"
    );
}

#[test]
fn symlink_then_write_in_one_layer_is_refused() {
    // Same trick inside one layer, with a relative link that the index does not list.
    let (home, work, store) = crafted();
    let index = index_text(&[idx_dir("d"), idx_file("d/a.html", BODY, 1)]);
    craft(
        &store,
        &index,
        &[
            tar(&[dir("d")]),
            tar(&[symlink("x", "../.."), file("x/escaped.html", BODY)]),
        ],
        "linkwrite1",
    );
    extract_refused(home.path(), work.path(), "linkwrite1", 3);
    assert!(!work
        .path()
        .parent()
        .expect("p")
        .join("escaped.html")
        .exists());
}

#[test]
fn index_claiming_dotdot_path_is_refused() {
    let (home, work, store) = crafted();
    let index = index_text(&[idx_file("../evil.html", BODY, 1)]);
    craft(
        &store,
        &index,
        &[tar(&[]), tar(&[file("../evil.html", BODY)])],
        "idx-dotdot",
    );
    let err = extract_refused(home.path(), work.path(), "idx-dotdot", 3);
    assert!(err.contains("bundle index"), "{err}");
    assert!(!work.path().parent().expect("p").join("evil.html").exists());
    // Reading the index alone (ls) refuses too.
    let out = sb(home.path())
        .args(["ls", "idx-dotdot"])
        .output()
        .expect("ls");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn index_claiming_absolute_path_is_refused() {
    let (home, work, store) = crafted();
    let target = work.path().join("abs.html");
    let p = target.to_string_lossy().into_owned();
    let index = index_text(&[idx_file(&p, BODY, 1)]);
    craft(
        &store,
        &index,
        &[tar(&[]), tar(&[file(&p, BODY)])],
        "idx-abs",
    );
    extract_refused(home.path(), work.path(), "idx-abs", 3);
    assert!(!target.exists());
}

#[test]
fn index_claiming_write_through_a_symlink_is_refused() {
    // `l` is a link to directory `d`, and the index lists `l/a.html`: writing it would go
    // through the link.
    let (home, work, store) = crafted();
    let index = index_text(&[
        idx_dir("d"),
        idx_link("l", "d"),
        idx_file("l/a.html", BODY, 1),
    ]);
    craft(
        &store,
        &index,
        &[
            tar(&[dir("d"), symlink("l", "d")]),
            tar(&[file("l/a.html", BODY)]),
        ],
        "idx-link",
    );
    let err = extract_refused(home.path(), work.path(), "idx-link", 3);
    assert!(err.contains("l/a.html"), "{err}");
}

#[test]
fn index_claiming_escaping_symlink_is_refused() {
    let (home, work, store) = crafted();
    let index = index_text(&[idx_file("a.html", BODY, 1), idx_link("up", "../../etc")]);
    craft(
        &store,
        &index,
        &[
            tar(&[symlink("up", "../../etc")]),
            tar(&[file("a.html", BODY)]),
        ],
        "idx-up",
    );
    let err = extract_refused(home.path(), work.path(), "idx-up", 3);
    assert!(err.contains("up"), "{err}");
}

#[test]
fn extra_file_not_in_index_is_refused() {
    let (home, work, store) = crafted();
    let index = index_text(&[idx_file("a.html", BODY, 1)]);
    craft(
        &store,
        &index,
        &[
            tar(&[]),
            tar(&[file("a.html", BODY), file("b.html", b"extra")]),
        ],
        "extra",
    );
    let err = extract_refused(home.path(), work.path(), "extra", 3);
    assert!(err.contains("b.html"), "{err}");
}

#[test]
fn file_content_not_matching_index_hash_is_refused() {
    let (home, work, store) = crafted();
    let index = index_text(&[idx_file("a.html", BODY, 1)]);
    let mut evil = file("a.html", b"<p>HELLO</p>\n");
    // Same size; the header is made to match what the index implies, only the bytes differ.
    evil.h.mtime = content_mtime(&FileHash::of(BODY).0);
    craft(&store, &index, &[tar(&[]), tar(&[evil])], "bytes");
    let err = extract_refused(home.path(), work.path(), "bytes", 3);
    assert!(
        err.contains("a.html") && err.contains(&FileHash::of(BODY).hex()),
        "{err}"
    );
}

/// Recompute a ustar header block's checksum after editing it.
fn fix_checksum(block: &mut [u8]) {
    block[148..156].copy_from_slice(b"        ");
    let sum: u32 = block[..512].iter().map(|&b| u32::from(b)).sum();
    block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// A one-file bundle whose layer 1 tar is the canonical one, edited by `edit` (its `diff_id` is
/// computed after the edit, so only canonical-form checks can catch it).
fn craft_edited(store: &Store, tag: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let index = index_text(&[idx_file("a.html", BODY, 1)]);
    let mut t1 = tar(&[file("a.html", BODY)]);
    edit(&mut t1);
    craft(store, &index, &[tar(&[]), t1], tag);
}

#[test]
fn issue_3_nonzero_tar_padding_is_refused() {
    // Found by fuzz/fuzz_targets/verify.rs: the reader skipped padding without looking at it, so
    // two byte forms (two diff_ids, two bundle ids) verified for one site, and 511 bytes per file
    // could be smuggled past verification.
    let (home, work, store) = crafted();
    craft_edited(&store, "pad", |t| t[512 + BODY.len() + 3] = b'X');
    let err = extract_refused(home.path(), work.path(), "pad", 3);
    assert!(err.contains("not canonical"), "{err}");
    assert_eq!(verify_code(home.path(), "pad").0, Some(3));
}

#[test]
fn issue_3_header_fields_outside_the_index_are_refused() {
    // uid 1000 and a user name: ignored by our reader's header comparison, but `tar -x` as root
    // (and container runtimes) would chown the files.
    let (home, work, store) = crafted();
    craft_edited(&store, "uid", |t| {
        t[108..116].copy_from_slice(b"0001750\0");
        t[265..270].copy_from_slice(b"alice");
        fix_checksum(&mut t[..512]);
    });
    let err = extract_refused(home.path(), work.path(), "uid", 3);
    assert!(err.contains("not canonical"), "{err}");
    assert_eq!(verify_code(home.path(), "uid").0, Some(3));
}

#[test]
fn edited_but_identical_tar_is_accepted() {
    // The control for the two tests above: an edit that changes nothing passes.
    let (home, work, store) = crafted();
    craft_edited(&store, "same", |t| fix_checksum(&mut t[..512]));
    let dest = work.path().join("out");
    sb(home.path())
        .args(["extract", "same"])
        .arg(&dest)
        .assert()
        .success();
    assert_eq!(fs::read(dest.join("a.html")).expect("read"), BODY);
}
