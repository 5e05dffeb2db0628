//! A next deploy's build does work in proportion to the change (issue 10, "Rebuild work in
//! proportion to the change"): zstd layers are runs of frames, a rebuild compresses only the runs
//! whose members changed and copies the others from the previous blobs, and the result is byte for
//! byte what a cold build of the same tree gives, with or without the cache.

use std::fs;
use std::path::Path;

use bundle::frames::{RUN_MAX, RUN_TARGET};
use bundle::{BuildOptions, BuildReport, Manifest, NoProgress, Store};

/// Deterministic page text: words from a small vocabulary (compresses like HTML does).
fn page(i: usize, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "<p>",
        "</p>",
        "<div class=\"nav\">",
        "</div>",
        "scipy",
        "array",
        "function",
        "returns",
        "the",
        "of",
        "a",
        "parameter",
        "<a href=\"../index.html\">",
        "</a>",
        "optimize",
        "sparse",
    ];
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = format!("<html><head><title>page {i}</title></head><body>\n").into_bytes();
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
        out.push(if x.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// A site of 600 pages (2-40 KB) in 12 directories and a few binary files: about 12 MB, so
/// several layers of several frames each.
fn make_site(root: &Path) {
    for i in 0..600 {
        let dir = root.join(format!("section-{:02}", i % 12));
        fs::create_dir_all(&dir).expect("mkdir");
        let len = 2_000 + (i * 7_919) % 38_000;
        fs::write(dir.join(format!("page-{i:04}.html")), page(i, len)).expect("write");
    }
    let img = root.join("img");
    fs::create_dir_all(&img).expect("mkdir");
    for i in 0..8 {
        let mut x = i as u64 + 7;
        let bytes: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        fs::write(img.join(format!("plot-{i}.png")), bytes).expect("write");
    }
}

fn opts(use_cache: bool) -> BuildOptions {
    BuildOptions {
        use_cache,
        ..BuildOptions::default()
    }
}

fn build(site: &Path, store: &Store, use_cache: bool) -> BuildReport {
    bundle::build(site, store, &opts(use_cache), &NoProgress).expect("build")
}

/// Rewrite one page in place, same size, different bytes (so the layering and the run cuts
/// stay as they are and exactly one run changes).
fn edit_same_size(site: &Path) -> std::path::PathBuf {
    let p = site.join("section-05/page-0101.html");
    let mut b = fs::read(&p).expect("read");
    let mid = b.len() / 2;
    b[mid..mid + 12].copy_from_slice(b"EDITED-PAGE!");
    fs::write(&p, b).expect("write");
    p
}

/// A new [`make_site`] and an empty store: (site, store home, store).
fn new_site() -> (tempfile::TempDir, tempfile::TempDir, Store) {
    let site = tempfile::tempdir().expect("tempdir");
    make_site(site.path());
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    (site, home, store)
}

/// A cold build of `site` into a store of its own, without the cache: what a rebuild must equal.
fn cold_without_cache(site: &Path) -> BuildReport {
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    build(site, &store, false)
}

/// The frame tables of the store's cache (one per zstd layer blob built).
fn frame_tables(store: &Store) -> Vec<std::path::PathBuf> {
    fs::read_dir(store.cache_dir().join("frames"))
        .expect("frame tables")
        .map(|e| e.expect("entry").path())
        .collect()
}

fn manifest(store: &Store, r: &BuildReport) -> Manifest {
    let bytes = store
        .read_blob(&r.manifest, bundle::manifest::MAX_JSON_BYTES)
        .expect("manifest");
    bundle::manifest::parse_manifest(&bytes).expect("parse manifest")
}

#[test]
fn issue_10_rebuild_one_edit_recompresses_only_that_run() {
    let (site, _home, store) = new_site();
    let cold = build(site.path(), &store, true);
    assert!(cold.layers >= 3, "a site of several layers: {cold:?}");
    assert!(
        cold.frames > cold.layers,
        "some layers are runs of several frames: {cold:?}"
    );
    assert_eq!(
        cold.frames_compressed, cold.frames,
        "a cold build compresses every frame"
    );

    // Nothing changed: every layer is reused whole, nothing is compressed.
    let same = build(site.path(), &store, true);
    assert_eq!(same.manifest, cold.manifest);
    assert_eq!(same.frames_compressed, 0, "{same:?}");
    assert_eq!(same.tar_bytes_compressed, 0);

    edit_same_size(site.path());
    let r = build(site.path(), &store, true);
    assert_ne!(r.id, cold.id);
    assert_eq!(
        r.frames_compressed, 1,
        "one page edited: only its run is compressed again ({r:?})"
    );
    assert!(
        r.tar_bytes_compressed <= RUN_MAX + RUN_TARGET,
        "at most one run of tar bytes: {r:?}"
    );
    // Layer 0 (the index changed) and the page's layer were written; the rest reused whole.
    assert_eq!(r.layers_reused, r.layers - 2, "{r:?}");
    assert_eq!(r.frames, cold.frames);
}

#[test]
fn issue_10_rebuild_is_byte_identical_to_cold_builds_with_and_without_cache() {
    let (site, _home, store) = new_site();
    build(site.path(), &store, true);
    edit_same_size(site.path());
    // A page that grows too (moves the run cuts around it) and a new page.
    fs::write(
        site.path().join("section-03/page-0099.html"),
        page(99_999, 61_000),
    )
    .expect("write");
    fs::write(site.path().join("section-00/new.html"), page(7, 5_000)).expect("write");
    let rebuilt = build(site.path(), &store, true);
    assert!(
        rebuilt.frames_compressed < rebuilt.frames / 2,
        "{rebuilt:?}"
    );

    for use_cache in [true, false] {
        let home2 = tempfile::tempdir().expect("tempdir");
        let store2 = Store::open(home2.path()).expect("store");
        let fresh = build(site.path(), &store2, use_cache);
        assert_eq!(
            fresh.manifest, rebuilt.manifest,
            "cold build (cache {use_cache}) and rebuild give the same manifest, hence the same \
             layer blobs"
        );
        assert_eq!(fresh.id, rebuilt.id);
        assert_eq!(fresh.frames_compressed, fresh.frames);
        for l in manifest(&store2, &fresh).layers {
            assert_eq!(
                fs::read(store2.blob_path(&l.digest)).expect("blob"),
                fs::read(store.blob_path(&l.digest)).expect("blob"),
            );
        }
    }
    let b = bundle::Bundle::open(&store, &rebuilt.manifest).expect("open");
    bundle::verify(&store, &b, &NoProgress).expect("the rebuilt bundle verifies");
}

/// Walk the zstd frames of a blob: (frame count, largest window) of the data frames; skippable
/// frames (the index trailer) are passed over.
fn frames_of(blob: &[u8]) -> (usize, u64) {
    let mut rest = blob;
    let (mut n, mut window) = (0, 0u64);
    while !rest.is_empty() {
        let magic = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            rest = &rest[8 + len..];
            continue;
        }
        assert_eq!(magic, 0xFD2F_B528, "a zstd frame");
        let size = zstd::zstd_safe::find_frame_compressed_size(rest).expect("frame size");
        // Frame header descriptor: single-segment frames have no window descriptor and a window
        // of their content size.
        let fhd = rest[4];
        let w = if fhd & 0x20 != 0 {
            zstd::zstd_safe::get_frame_content_size(rest)
                .ok()
                .flatten()
                .expect("content size")
        } else {
            let wd = rest[5];
            let exp = u64::from(wd >> 3) + 10;
            let base = 1u64 << exp;
            base + (base / 8) * u64::from(wd & 7)
        };
        window = window.max(w);
        n += 1;
        rest = &rest[size..];
    }
    (n, window)
}

#[test]
fn issue_10_rebuild_layers_are_frames_one_zstd_stream_within_the_window_limit() {
    let (site, _home, store) = new_site();
    let r = build(site.path(), &store, true);
    let b = bundle::Bundle::open(&store, &r.manifest).expect("open");
    let mut total = 0;
    for (l, diff_id) in manifest(&store, &r)
        .layers
        .iter()
        .zip(&b.meta.config.rootfs.diff_ids)
    {
        let blob = fs::read(store.blob_path(&l.digest)).expect("blob");
        let (n, window) = frames_of(&blob);
        assert!(n >= 1);
        assert!(window <= 8 << 20, "window {window} over the spec's 8 MiB");
        total += n;
        // The `zstd` tool decodes the frames as one stream to the tar of the diff_id.
        let out = std::process::Command::new("zstd")
            .args(["-dc", "-q"])
            .arg(store.blob_path(&l.digest))
            .output()
            .expect("run zstd (apt-get install zstd)");
        assert!(out.status.success());
        assert_eq!(bundle::Digest::of(&out.stdout), *diff_id);
    }
    assert_eq!(total, r.frames);
}

#[test]
fn issue_10_rebuild_a_damaged_frame_cache_is_caught_and_ignored() {
    let (site, _home, store) = new_site();
    build(site.path(), &store, true);
    // Every frame table now points each key at the wrong frame (shifted by one line).
    for p in frame_tables(&store) {
        let text = fs::read_to_string(&p).expect("table");
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 2 {
            continue;
        }
        let shifted: String = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let key = l.split('\t').next().expect("key");
                let other = lines[(i + 1) % lines.len()];
                let loc = other.split_once('\t').expect("loc").1;
                format!("{key}\t{loc}\n")
            })
            .collect();
        fs::write(&p, shifted).expect("write table");
    }
    // Drop the whole-layer cache too, so the frames are what a rebuild looks at.
    fs::remove_dir_all(store.cache_dir().join("layers")).expect("rm layers cache");
    edit_same_size(site.path());
    let r = build(site.path(), &store, true);
    let fresh = cold_without_cache(site.path());
    assert_eq!(r.manifest, fresh.manifest, "wrong frames were not used");
    assert!(
        r.frames_compressed > r.frames / 2,
        "the layers whose frames were wrong were compressed afresh: {r:?}"
    );
}

/// The frames of a rebuilt layer before its first change are copied as they are: the frame
/// table recorded the `diff_id` hash state around each frame, so they need no decompressing,
/// and the result is still byte for byte a cold build.
#[test]
fn issue_10_rebuild_copies_the_unchanged_start_of_a_layer_as_it_is() {
    let (site, _home, store) = new_site();
    let cold = build(site.path(), &store, true);
    assert_eq!(cold.frames_copied_raw, 0, "{cold:?}");
    // The last page of a section sorts late in its layer: runs before it are unchanged.
    let p = site.path().join("section-11/page-0599.html");
    let mut b = fs::read(&p).expect("read");
    b[100..112].copy_from_slice(b"EDITED-PAGE!");
    fs::write(&p, b).expect("write");
    let r = build(site.path(), &store, true);
    assert_eq!(r.frames_compressed, 1, "{r:?}");
    assert!(
        r.frames_copied_raw >= 1,
        "the unchanged start of the edited layer is copied without decompressing: {r:?}"
    );
    // A second edit, from the tables the rebuild wrote: the same again.
    let p = site.path().join("section-11/page-0587.html");
    let mut b = fs::read(&p).expect("read");
    b[100..112].copy_from_slice(b"EDITED-AGAIN");
    fs::write(&p, b).expect("write");
    let r = build(site.path(), &store, true);
    assert!(r.frames_copied_raw >= 1, "{r:?}");
    let fresh = cold_without_cache(site.path());
    assert_eq!(
        r.manifest, fresh.manifest,
        "a rebuild is a cold build, byte for byte"
    );
    let b = bundle::Bundle::open(&store, &r.manifest).expect("open");
    bundle::verify(&store, &b, &NoProgress).expect("the rebuilt bundle verifies");
}

/// A frame copied as it is must be the bytes its table recorded: a blob damaged on disk, or a
/// table line whose end state was altered, is caught (the frame is decompressed and checked, or
/// the layer compressed afresh), never copied into a new bundle.
#[test]
fn issue_10_rebuild_a_damaged_blob_or_table_line_is_not_copied_as_it_is() {
    let (site, _home, store) = new_site();
    build(site.path(), &store, true);
    let mut damaged = 0;
    for p in frame_tables(&store) {
        let text = fs::read_to_string(&p).expect("table");
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 3 {
            continue;
        }
        let hex = p.file_name().and_then(|n| n.to_str()).expect("name");
        let blob = store.blob_path(&format!("sha256:{hex}").parse().expect("digest"));
        // One byte in the middle of the blob's first frame.
        let len: usize = lines[0]
            .split('\t')
            .nth(2)
            .expect("len")
            .parse()
            .expect("n");
        let mut bytes = fs::read(&blob).expect("blob");
        bytes[len / 2] ^= 0x40;
        fs::write(&blob, &bytes).expect("write blob");
        // And the recorded end state of the second frame, its check left as it was.
        let mut f: Vec<String> = lines[1].split('\t').map(str::to_string).collect();
        assert_eq!(f.len(), 7, "a chained table line: {}", lines[1]);
        let flipped = if f[4].starts_with('0') { "1" } else { "0" };
        f[4].replace_range(0..1, flipped);
        let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        out[1] = f.join("\t");
        fs::write(&p, out.join("\n") + "\n").expect("write table");
        damaged += 1;
    }
    assert!(damaged >= 2, "several layers of several frames");
    fs::remove_dir_all(store.cache_dir().join("layers")).expect("rm layers cache");
    edit_same_size(site.path());
    let r = build(site.path(), &store, true);
    let fresh = cold_without_cache(site.path());
    assert_eq!(r.manifest, fresh.manifest, "no damaged frame was copied");
    // (The store still holds the damaged old blobs under their names, where the rebuild wrote
    // the same bytes again: `verify` reports those, as it should.)
}
