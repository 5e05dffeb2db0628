//! Determinism and round-trip properties of `build` and `extract` (issue 3).
//!
//! Random small sites (nested and unicode paths, 0..200 KB files, duplicate contents, exec bits,
//! symlinks inside the site, empty directories) are written twice, with a different creation
//! order, random mtimes, different permission bits (what different umasks give) and a different
//! rayon thread count; both builds must give the same bundle id. Extracting the bundle must give
//! the site back: paths, types, bytes, exec bits and symlink targets.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use bundle::{build, extract, BuildOptions, Bundle, ExtractOptions, NoProgress, Store};
use proptest::prelude::*;

/// Names used to make paths: ASCII, spaces, dots, non-Latin, 4-byte UTF-8 (all NFC and
/// pairwise distinct after normalization).
const NAMES: &[&str] = &[
    "a",
    "b",
    "docs",
    "index.html",
    "x y.css",
    "caf\u{e9}.html",
    "日本語",
    "😀.txt",
    "Z.png",
    "deep",
    ".hidden",
    "v1.2.js",
];

#[derive(Debug, Clone)]
struct FileSpec {
    path: Vec<usize>,
    /// Which content: seeds are few, so duplicates are common.
    seed: u8,
    size: usize,
    exec: bool,
}

#[derive(Debug, Clone)]
struct SiteSpec {
    files: Vec<FileSpec>,
    /// (dir of the link as a path of name indexes, which file it points to)
    links: Vec<(Vec<usize>, usize)>,
    empty_dirs: Vec<Vec<usize>>,
}

fn path_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..NAMES.len(), 1..4)
}

fn size_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0usize..2_000,
        1 => Just(0usize),
        1 => 2_000usize..200_000,
    ]
}

fn site_strategy() -> impl Strategy<Value = SiteSpec> {
    let file = (path_strategy(), 0u8..4, size_strategy(), any::<bool>()).prop_map(
        |(path, seed, size, exec)| FileSpec {
            path,
            seed,
            size,
            exec,
        },
    );
    (
        prop::collection::vec(file, 1..14),
        prop::collection::vec(
            (prop::collection::vec(0..NAMES.len(), 0..3), any::<usize>()),
            0..4,
        ),
        prop::collection::vec(path_strategy(), 0..3),
    )
        .prop_map(|(files, links, empty_dirs)| SiteSpec {
            files,
            links,
            empty_dirs,
        })
}

fn content(seed: u8, size: usize) -> Vec<u8> {
    let mut x = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// What the site will hold, after resolving conflicts (a path cannot be a file and a directory).
#[derive(Debug, Default)]
struct Plan {
    files: BTreeMap<String, (Vec<u8>, bool)>,
    dirs: BTreeSet<String>,
    links: BTreeMap<String, String>,
}

fn join(parts: &[usize]) -> String {
    parts
        .iter()
        .map(|&i| NAMES[i])
        .collect::<Vec<_>>()
        .join("/")
}

fn plan(spec: &SiteSpec) -> Plan {
    let mut p = Plan::default();
    let taken = |p: &Plan, path: &str| {
        p.files.contains_key(path) || p.dirs.contains(path) || p.links.contains_key(path)
    };
    let parents_free = |p: &Plan, parts: &[usize]| {
        (1..parts.len()).all(|k| {
            let d = join(&parts[..k]);
            !p.files.contains_key(&d) && !p.links.contains_key(&d)
        })
    };
    for f in &spec.files {
        let path = join(&f.path);
        if taken(&p, &path) || !parents_free(&p, &f.path) {
            continue;
        }
        for k in 1..f.path.len() {
            p.dirs.insert(join(&f.path[..k]));
        }
        p.files.insert(path, (content(f.seed, f.size), f.exec));
    }
    for d in &spec.empty_dirs {
        let path = join(d);
        if taken(&p, &path) || !parents_free(&p, d) {
            continue;
        }
        for k in 1..=d.len() {
            p.dirs.insert(join(&d[..k]));
        }
    }
    let files: Vec<String> = p.files.keys().cloned().collect();
    for (k, (dir, which)) in spec.links.iter().enumerate() {
        let target = &files[which % files.len()];
        let parts = dir;
        if !parents_free(&p, parts)
            || (!parts.is_empty() && taken(&p, &join(parts)) && !p.dirs.contains(&join(parts)))
        {
            continue;
        }
        let dir_path = join(parts);
        let name = format!("link-{k}");
        let link_path = if dir_path.is_empty() {
            name
        } else {
            format!("{dir_path}/{name}")
        };
        if taken(&p, &link_path) {
            continue;
        }
        for i in 1..=parts.len() {
            p.dirs.insert(join(&parts[..i]));
        }
        // Relative target: up to the root, then down to the file.
        let depth = link_path.matches('/').count();
        let rel = format!("{}{target}", "../".repeat(depth));
        p.links.insert(link_path, rel);
    }
    p
}

/// Write the plan under `root`. `variant` changes creation order, mtimes and permission bits.
fn materialize(p: &Plan, root: &Path, variant: u64) {
    fs::create_dir_all(root).expect("mkdir root");
    let mut dirs: Vec<&String> = p.dirs.iter().collect();
    let mut files: Vec<(&String, &(Vec<u8>, bool))> = p.files.iter().collect();
    let mut links: Vec<(&String, &String)> = p.links.iter().collect();
    // Creation order: sorted for variant 0, reversed or rotated otherwise (parents first is
    // handled by create_dir_all).
    if variant % 2 == 1 {
        dirs.reverse();
        files.reverse();
        links.reverse();
    } else if variant > 0 {
        let k = variant as usize % files.len().max(1);
        files.rotate_left(k);
    }
    let (file_mode, exec_mode, dir_mode) = match variant % 3 {
        0 => (0o644, 0o755, 0o755),
        1 => (0o600, 0o700, 0o700), // umask 077
        _ => (0o664, 0o775, 0o775), // umask 002
    };
    for d in dirs {
        fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    let mut t = 1_000_000_000 + variant * 7_777;
    for (path, (bytes, exec)) in files {
        let fp = root.join(path);
        fs::create_dir_all(fp.parent().expect("parent")).expect("mkdir -p");
        fs::write(&fp, bytes).expect("write");
        fs::set_permissions(
            &fp,
            fs::Permissions::from_mode(if *exec { exec_mode } else { file_mode }),
        )
        .expect("chmod");
        t = t
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            % 2_000_000_000;
        let f = fs::File::options().write(true).open(&fp).expect("open");
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(t))
            .expect("set mtime");
    }
    for (path, target) in links {
        let lp = root.join(path);
        fs::create_dir_all(lp.parent().expect("parent")).expect("mkdir -p");
        std::os::unix::fs::symlink(target, &lp).expect("symlink");
    }
    for d in p.dirs.iter().rev() {
        fs::set_permissions(root.join(d), fs::Permissions::from_mode(dir_mode)).expect("chmod dir");
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>, bool),
    Link(String),
}

fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let md = fs::symlink_metadata(&p).expect("lstat");
            if md.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.insert(rel, Node::Link(t.to_string_lossy().into_owned()));
            } else if md.is_dir() {
                out.insert(rel, Node::Dir);
                go(root, &p, out);
            } else {
                let exec = md.permissions().mode() & 0o111 != 0;
                out.insert(rel, Node::File(fs::read(&p).expect("read"), exec));
            }
        }
    }
    let mut out = BTreeMap::new();
    go(root, root, &mut out);
    out
}

fn build_with_threads(
    site: &Path,
    store: &Store,
    threads: usize,
    opts: &BuildOptions,
) -> bundle::BuildReport {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    pool.install(|| build(site, store, opts, &NoProgress))
        .expect("build succeeds")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn id_ignores_order_mtime_modes_and_threads(spec in site_strategy(), variant in 1u64..6) {
        let p = plan(&spec);
        let t = tempfile::tempdir().expect("tempdir");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        materialize(&p, &a, 0);
        materialize(&p, &b, variant);
        let sa = Store::open(t.path().join("store-a")).expect("store");
        let sb = Store::open(t.path().join("store-b")).expect("store");
        let opts = BuildOptions::default();
        let ra = build_with_threads(&a, &sa, 1, &opts);
        let rb = build_with_threads(&b, &sb, 1 + variant as usize, &opts);
        prop_assert_eq!(ra.id, rb.id);
        prop_assert_eq!(ra.manifest, rb.manifest);
        // A rebuild into the same store (warm cache) gives the same id too.
        let rc = build_with_threads(&b, &sa, 2, &opts);
        prop_assert_eq!(ra.id, rc.id);

        // pack → extract is the identity.
        let bundle = Bundle::open(&sa, &ra.manifest).expect("open");
        let dest = t.path().join("out");
        extract(&sa, &bundle, &dest, ExtractOptions::default(), &NoProgress).expect("extract");
        prop_assert_eq!(tree(&a), tree(&dest));
    }

    #[test]
    fn id_changes_with_content_or_exec_bit(spec in site_strategy(), which in any::<usize>(), flip_exec in any::<bool>()) {
        // The other side of determinism: what the id must not ignore.
        let mut p = plan(&spec);
        let t = tempfile::tempdir().expect("tempdir");
        let a = t.path().join("a");
        materialize(&p, &a, 0);
        let keys: Vec<String> = p.files.keys().cloned().collect();
        let k = &keys[which % keys.len()];
        let (bytes, exec) = p.files.get_mut(k).expect("file");
        if flip_exec {
            *exec = !*exec;
        } else {
            bytes.push(b'!');
        }
        let b = t.path().join("b");
        materialize(&p, &b, 0);
        let store = Store::open(t.path().join("store")).expect("store");
        let opts = BuildOptions::default();
        let ra = build_with_threads(&a, &store, 2, &opts);
        let rb = build_with_threads(&b, &store, 2, &opts);
        prop_assert_ne!(ra.id, rb.id);
    }
}
