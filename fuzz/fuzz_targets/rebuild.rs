//! Fuzz the index rebuilt from layers when layer 0 carries no trailer (a copy re-compressed by a
//! registry tool): layer 1 is fuzzer-made and stored as a plain tar (so its `diff_id` matches),
//! layer 0 is canonical without a trailer, the config's index label is the canonical index's.
//! The rebuild reads every member of every layer with bounded memory; whatever it rebuilds must
//! hash to the label. Oracle: the bundle opens and verifies only when layer 1 is exactly the
//! canonical tar.
#![no_main]

#[path = "harness.rs"]
mod harness;

use std::collections::HashMap;
use std::sync::OnceLock;

use bundle::{layout, tar, Bundle, Entry, EntryKind, FileHash, Index, NoProgress, SitePath};
use harness::{assemble, Blob};
use libfuzzer_sys::fuzz_target;

struct Fixed {
    index: Vec<u8>,
    tar0: Vec<u8>,
    tar1: Vec<u8>,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let p = |s: &str| SitePath::new(s).expect("path");
        let a = b"<p>same</p>\n".to_vec();
        let file = |s: &str, c: &[u8], x: bool| Entry {
            path: p(s),
            kind: EntryKind::File {
                size: c.len() as u64,
                hash: FileHash::of(c),
                executable: x,
            },
            layer: 1,
        };
        let idx = Index::new(vec![
            Entry {
                path: p("d"),
                kind: EntryKind::Dir,
                layer: 0,
            },
            Entry {
                path: p("l"),
                kind: EntryKind::Symlink {
                    target: "d/a.html".into(),
                },
                layer: 0,
            },
            file("d/a.html", &a, false),
            file("d/b.html", &a, false),
            file("run.js", b"#!/bin/sh\n", true),
        ])
        .expect("index");
        let mut contents: HashMap<FileHash, Vec<u8>> = HashMap::new();
        contents.insert(FileHash::of(&a), a);
        contents.insert(FileHash::of(b"#!/bin/sh\n"), b"#!/bin/sh\n".to_vec());
        let tar_of = |n: u32| {
            let mut out = Vec::new();
            for m in layout::members(idx.entries(), n) {
                tar::write_header(&mut out, &layout::header(&m)).expect("header");
                if let layout::Member::File(e) = m {
                    let c = &contents[&e.hash().expect("hash")];
                    out.extend_from_slice(c);
                    out.extend(std::iter::repeat_n(0u8, tar::padding(c.len() as u64)));
                }
            }
            tar::write_end(&mut out).expect("end");
            out
        };
        let f = Fixed {
            index: idx.encode(),
            tar0: tar_of(0),
            tar1: tar_of(1),
        };
        // The harness itself must be right: the canonical copy rebuilds and verifies.
        let (src, md) = assemble(&f.index, &[f.tar0.clone(), f.tar1.clone()], Blob::Tar, false);
        let b = Bundle::open(&src, &md).expect("the canonical copy opens");
        bundle::verify(&src, &b, &NoProgress).expect("the canonical copy verifies");
        f
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let tar1 = if sel & 1 == 0 {
        rest.to_vec()
    } else {
        // The canonical tar with (u16 LE position, byte) patches.
        let mut t = f.tar1.clone();
        for c in rest.chunks_exact(3) {
            let pos = usize::from(u16::from_le_bytes([c[0], c[1]])) % t.len();
            t[pos] = c[2];
        }
        t
    };
    let (src, md) = assemble(&f.index, &[f.tar0.clone(), tar1.clone()], Blob::Tar, false);
    if let Ok(b) = Bundle::open(&src, &md) {
        if bundle::verify(&src, &b, &NoProgress).is_ok() {
            assert_eq!(tar1, f.tar1, "a rebuilt index verified a non-canonical layer");
        }
    }
});
