//! Bundles whose declared sizes are what hurts: an index declaring millions of entries in a
//! small layer 0, a bundle full of symlinks, an honest bundle whose index is too large to keep in
//! memory. Each returns the index and the layer tars for [`crate::craft::craft_with`].

use bundle::index::{Entry, EntryKind, Index};
use bundle::layout::{self, Member};
use bundle::path::SitePath;
use bundle::tar::{padding, write_end, write_header};
use bundle::FileHash;

use crate::craft::{file, idx_file, tar};

/// Issue 8 item 4: an index of `n` directories (`d0000000`, ...) and one file, in a layer 0 whose
/// tar is empty. Compressed, the index of 4M directories is about 1.5 MB. Nothing past the index
/// is consistent: a reader must give up on the index, and early.
pub fn index_bomb(n: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    const BODY: &[u8] = b"<p>bomb</p>\n";
    let mut s = String::with_capacity(n * 24 + 128);
    s.push_str("sitebundle-index 1\n");
    for i in 0..n {
        s.push_str(&format!("d\t755\t0\t0\t-\td{i:07}\n"));
    }
    s.push_str(&idx_file("index.html", BODY, 1));
    s.push('\n');
    (
        s.into_bytes(),
        vec![tar(&[]), tar(&[file("index.html", BODY)])],
    )
}

/// Encode `entries` (sorted, layers assigned) as an honest bundle: index and canonical tars with
/// `content(hash)` giving each file's bytes.
pub fn honest(
    entries: Vec<Entry>,
    content: impl Fn(&FileHash) -> Vec<u8>,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut entries = entries;
    entries.sort_by(|a, b| a.path.as_str().as_bytes().cmp(b.path.as_str().as_bytes()));
    let n = layout::assign_layers(&mut entries);
    let idx = Index::new(entries).expect("an honest index");
    let tars = (0..n)
        .map(|k| {
            let mut out = Vec::new();
            for m in layout::members(idx.entries(), k) {
                write_header(&mut out, &layout::header(&m)).expect("header");
                if let Member::File(e) = m {
                    let body = content(&e.hash().expect("hash"));
                    out.extend_from_slice(&body);
                    out.extend(std::iter::repeat_n(0u8, padding(body.len() as u64)));
                }
            }
            write_end(&mut out).expect("end");
            out
        })
        .collect();
    (idx.encode(), tars)
}

fn dir(p: &str) -> Entry {
    Entry {
        path: SitePath::new(p).expect("path"),
        kind: EntryKind::Dir,
        layer: 0,
    }
}

fn body_of(i: usize) -> Vec<u8> {
    format!("<p>page {i}</p>\n").into_bytes()
}

/// An honest bundle of `contents` distinct pages, each at `copies` paths about 750 bytes long
/// (three long directory names), so that its index is larger than a reader keeps in memory
/// (32 MiB) with few entries and few bytes of content: 12,000 × 4 gives a 39 MB index.
pub fn large_index(contents: usize, copies: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let long = |c: char| c.to_string().repeat(250);
    let base = format!("site/{}/{}", long('a'), long('b'));
    let mut entries = vec![dir("site"), dir(&format!("site/{}", long('a'))), dir(&base)];
    let mut by_hash = std::collections::HashMap::new();
    for s in 0..copies {
        entries.push(dir(&format!("{base}/section-{s:02}")));
    }
    let slug = "a-page-with-a-long-descriptive-slug-".repeat(5);
    for i in 0..contents {
        let body = body_of(i);
        let h = FileHash::of(&body);
        by_hash.insert(h, i);
        for s in 0..copies {
            entries.push(Entry {
                path: SitePath::new(format!("{base}/section-{s:02}/{slug}{i:07}.html"))
                    .expect("path"),
                kind: EntryKind::File {
                    size: body.len() as u64,
                    hash: h,
                    executable: false,
                },
                layer: 0,
            });
        }
    }
    honest(entries, move |h| body_of(by_hash[h]))
}

/// The path of copy `s` of page `i` in [`large_index`].
pub fn large_index_page(s: usize, i: usize) -> String {
    let long = |c: char| c.to_string().repeat(250);
    let slug = "a-page-with-a-long-descriptive-slug-".repeat(5);
    format!(
        "site/{}/{}/section-{s:02}/{slug}{i:07}.html",
        long('a'),
        long('b')
    )
}

/// An honest bundle of `n` symlinks in chains of 32 (each link names the one before it, the
/// first of each chain the page), with targets padded by `./` to `target_len` bytes: what costs
/// a resolver the most within the limits (every link followed up to the 32 allowed).
pub fn link_bomb(n: usize, target_len: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let body = b"<p>home</p>\n".to_vec();
    let h = FileHash::of(&body);
    let mut entries = vec![
        dir("l"),
        Entry {
            path: SitePath::new("index.html").expect("path"),
            kind: EntryKind::File {
                size: body.len() as u64,
                hash: h,
                executable: false,
            },
            layer: 0,
        },
    ];
    for i in 0..n {
        let name = if i % 32 == 0 {
            "../index.html".to_string()
        } else {
            format!("{:08}", i - 1)
        };
        let pad = "./".repeat(target_len.saturating_sub(name.len()) / 2);
        entries.push(Entry {
            path: SitePath::new(format!("l/{i:08}")).expect("path"),
            kind: EntryKind::Symlink {
                target: format!("{pad}{name}"),
            },
            layer: 0,
        });
    }
    honest(entries, move |_| body.clone())
}
