//! Issue 8 item 4, the index bomb: a 1.5 MB layer 0 declaring 4M entries cost 900 MB of RSS and
//! 12 s before it was refused. Verifying or extracting any bundle, honest or not, must stay within
//! 128 MiB; the peak RSS of the real binary is measured with the kernel's accounting (`wait4`'s
//! `ru_maxrss`, [`testkit::rss`]), never a timer. Honest bundles whose index is too large to keep
//! in memory (the streamed path) and bundles full of symlinks are measured too, and must verify.

mod common;

use std::path::Path;

use bundle::{Compression, Store};
use common::*;
use testkit::bombs::{index_bomb, large_index, large_index_page, link_bomb};
use testkit::craft::craft_with;
use testkit::rss::{self, Measured};

/// The bound issue 8 sets for `verify`, `extract` and `sitebundle-init`.
const MAX_RSS_KIB: u64 = 128 * 1024;

fn measured(home: &Path, args: &[&str]) -> Measured {
    let mut c = std::process::Command::new(bin_path());
    c.env("SITEBUNDLE_HOME", home)
        .env_remove("RAYON_NUM_THREADS")
        .arg("--quiet")
        .args(args);
    let started = std::time::Instant::now();
    let m = rss::run(&c);
    // Informative only: nothing here asserts on time.
    eprintln!(
        "sitebundle {}: exit {:?}, peak RSS {:.1} MiB ({:.1} s)",
        args.join(" "),
        m.code,
        m.max_rss_mib(),
        started.elapsed().as_secs_f64()
    );
    m
}

fn assert_within(m: &Measured, what: &str) {
    assert!(
        m.max_rss_kib <= MAX_RSS_KIB,
        "{what}: peak RSS {:.1} MiB is above 128 MiB",
        m.max_rss_mib()
    );
}

fn tag(store: &Store, c: bundle::digest::Digest, size: u64, id: bundle::Digest, t: &str) {
    store
        .add_manifest(c, size, id, &[t.to_string()])
        .expect("tag");
}

#[test]
fn issue_8_index_bomb_of_4m_entries_is_refused_within_128_mib() {
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let (index, tars) = index_bomb(4_000_000);
    for (c, t) in [
        (Compression::Zstd, "bomb-zstd"),
        (Compression::Gzip, "bomb-gzip"),
    ] {
        let b = craft_with(&store, c, &index, &tars);
        tag(&store, b.manifest, b.manifest_size, b.id, t);
        let m = measured(home.path(), &["verify", t]);
        assert_eq!(m.code, Some(3), "{t}: {}", m.err());
        assert!(m.err().contains("more than 2097152 entries"), "{}", m.err());
        assert_within(&m, &format!("verify {t}"));
        let dest = work.path().join(t);
        let m = measured(home.path(), &["extract", t, &dest.to_string_lossy()]);
        assert_eq!(m.code, Some(3), "{t}: {}", m.err());
        assert!(!dest.exists());
        assert_within(&m, &format!("extract {t}"));
    }
}

#[test]
fn issue_8_index_bomb_declared_in_the_config_is_refused_before_the_index_is_read() {
    // The config's dev.sitebundle.files is checked against the limit before any index byte is
    // read (the label is part of the bundle id, so a lie is a different bundle).
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let mut f = testkit::forge::Forge::from_store(&store, &{
        let site = home.path().join("site");
        sample_site(&site);
        let _ = build(home.path(), &site, &["--tag", "honest"]);
        store.resolve("honest").expect("honest")
    });
    f.labels = Some(("3000000".into(), "1".into()));
    f.seal(&store, "declared");
    let m = measured(home.path(), &["verify", "declared"]);
    assert_eq!(m.code, Some(3), "{}", m.err());
    assert!(m.err().contains("declares 3000000 files"), "{}", m.err());
    assert_within(&m, "verify declared");
}

#[test]
fn issue_8_index_bomb_honest_bundle_with_an_index_too_large_to_keep_verifies_within_128_mib() {
    // 48,000 files (12,000 contents at 4 paths of 750 bytes), a 39 MB index: more than a reader
    // keeps in memory, so every pass streams it from layer 0 again.
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let (index, tars) = large_index(12_000, 4);
    assert!(
        index.len() as u64 > bundle::limits::IN_MEMORY_INDEX_BYTES,
        "the index ({} bytes) must not fit in memory",
        index.len()
    );
    let b = craft_with(&store, Compression::Zstd, &index, &tars);
    tag(&store, b.manifest, b.manifest_size, b.id, "large");
    let m = measured(home.path(), &["verify", "large"]);
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert!(String::from_utf8_lossy(&m.stdout).contains("48000 files"));
    assert_within(&m, "verify large");
    let dest = work.path().join("out");
    let m = measured(home.path(), &["extract", "large", &dest.to_string_lossy()]);
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert_within(&m, "extract large");
    let page = dest.join(large_index_page(3, 11_999));
    assert_eq!(std::fs::read(page).expect("page"), b"<p>page 11999</p>\n");
}

#[test]
fn issue_8_index_bomb_of_symlinks_verifies_within_128_mib() {
    // 100,000 links in chains of 32 with 150-byte targets (15 MB of targets, within the 16 MiB
    // limit): every link resolved through up to 31 others, memo and path table bounded.
    let home = tempfile::tempdir().expect("tempdir");
    let store = Store::open(home.path()).expect("store");
    let (index, tars) = link_bomb(100_000, 150);
    let b = craft_with(&store, Compression::Zstd, &index, &tars);
    tag(&store, b.manifest, b.manifest_size, b.id, "links");
    let m = measured(home.path(), &["verify", "links"]);
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert_within(&m, "verify links");
    // One link more than the limit is refused.
    let (index, tars) = link_bomb(bundle::limits::MAX_LINKS as usize + 1, 1);
    let b = craft_with(&store, Compression::Zstd, &index, &tars);
    tag(&store, b.manifest, b.manifest_size, b.id, "too-many-links");
    let m = measured(home.path(), &["verify", "too-many-links"]);
    assert_eq!(m.code, Some(3), "{}", m.err());
    assert!(
        m.err().contains("symlinks, the most the format allows"),
        "{}",
        m.err()
    );
    assert_within(&m, "verify too-many-links");
}

#[test]
fn issue_8_index_bomb_medium_corpus_verifies_and_extracts_within_128_mib() {
    let corpus = std::env::var_os("SITEBUNDLE_TEST_CORPUS")
        .expect("SITEBUNDLE_TEST_CORPUS is unset: run the tests with scripts/test");
    let site = Path::new(&corpus).join("medium/v1");
    assert!(
        site.is_dir(),
        "{} is missing: scripts/test builds the corpus",
        site.display()
    );
    let home = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    build(home.path(), &site, &["--tag", "m"]);
    let m = measured(home.path(), &["verify", "m"]);
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert_within(&m, "verify medium");
    let dest = work.path().join("out");
    let m = measured(home.path(), &["extract", "m", &dest.to_string_lossy()]);
    assert_eq!(m.code, Some(0), "{}", m.err());
    assert_within(&m, "extract medium");
}
