//! The forgery suite's helper: take an honest bundle, rewrite it with exactly one rule of spec
//! §4-§9 broken, and recompute every digest (layer blobs, `diff_id`s, index label, config,
//! manifest), so that only the deep checks (index rules, canonical tar, grouping, canonical
//! config, strict manifest) can refuse it.
//!
//! [`Forge::from_store`] decodes an honest bundle into its parts (index bytes, uncompressed layer
//! tars, file contents, platform); a [`Rule`] edits them; [`Forge::seal`] encodes them again the
//! way sitebundle does (same compression, index trailer, canonical config and manifest), then
//! applies the rule's byte-level edits to the trailer, config or manifest, and stores the result
//! under a tag. [`RULES`] names one rule per MUST; the `Control` rule changes nothing, so a test
//! can prove the helper itself produces bundles readers accept (with the honest bundle id).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use bundle::compress::LayerDecoder;
use bundle::index::Index;
use bundle::layout::{self, Member};
use bundle::manifest::{self, ImageConfig, RootFs, RunConfig, KEY_BYTES, KEY_FILES, KEY_FORMAT};
use bundle::tar::{padding, write_end, write_header};
use bundle::{Bundle, Compression, Digest, FileHash, Store};

use crate::craft::Crafted;

/// Which part a byte-level edit applies to after encoding.
type Edit = fn(&mut Vec<u8>);

/// An honest bundle taken apart, ready to be rewritten.
pub struct Forge {
    /// Layer compression (every layer).
    pub compression: Compression,
    /// The index bytes.
    pub index: Vec<u8>,
    /// Each layer's uncompressed tar stream.
    pub tars: Vec<Vec<u8>>,
    /// `os`, `architecture`.
    pub platform: (String, String),
    /// File contents by BLAKE3, to regenerate tars from an edited index.
    pub contents: BTreeMap<FileHash, Vec<u8>>,
    /// How layer 0 carries the index.
    pub trailer: Trailer,
    /// Edit of the canonical config bytes (before they are hashed).
    pub edit_config: Option<Edit>,
    /// Edit of the canonical manifest bytes (before they are hashed).
    pub edit_manifest: Option<Edit>,
    /// Labels to write instead of the counts of the index: (files, bytes) strings.
    pub labels: Option<(String, String)>,
}

/// How layer 0 carries the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailer {
    /// As spec §7 says: one zstd frame.
    Standard,
    /// The index compressed as two zstd frames, one after the other, in the payload.
    TwoFrames,
    /// The zstd trailer's index frame with another skippable magic (`0x184D2A50`).
    OtherSkippableMagic,
}

/// One forgery: a MUST of the spec broken in one way.
pub struct Rule {
    /// Short name (the test table's key).
    pub name: &'static str,
    /// The spec section whose MUST it breaks.
    pub section: &'static str,
    /// What it does.
    pub what: &'static str,
    /// Words `sitebundle verify`'s error must contain (so the test knows which check refused).
    pub expect: &'static str,
    /// Whether the reference reader is run on it (false only where it cannot see the rule).
    pub reference_reader: bool,
    /// The edit.
    pub apply: fn(&mut Forge),
}

impl Forge {
    /// Take apart the bundle with manifest `manifest` of `store` (it must verify).
    pub fn from_store(store: &Store, manifest: &Digest) -> Forge {
        let b = Bundle::open(store, manifest).expect("the honest bundle opens");
        let compression = b.meta.encodings[0]
            .compression()
            .expect("an honest bundle is compressed");
        let index = b.index.bytes(store).expect("index bytes");
        let mut tars = Vec::new();
        let mut contents = BTreeMap::new();
        for l in &b.meta.manifest.layers {
            let blob = std::fs::read(store.blob_path(&l.digest)).expect("layer blob");
            let mut tar = Vec::new();
            LayerDecoder::new(compression.into(), &blob[..])
                .expect("decoder")
                .read_to_end(&mut tar)
                .expect("decompress");
            let mut r = bundle::tar::TarReader::new(&tar[..], "forge");
            while let Some(h) = r.next_header().expect("honest tar") {
                if h.size > 0 || h.kind == bundle::tar::TarKind::File {
                    let mut body = Vec::new();
                    r.copy_content(&mut body).expect("content");
                    contents.insert(FileHash::of(&body), body);
                }
            }
            tars.push(tar);
        }
        Forge {
            compression,
            index,
            tars,
            platform: (b.meta.config.os.clone(), b.meta.config.architecture.clone()),
            contents,
            trailer: Trailer::Standard,
            edit_config: None,
            edit_manifest: None,
            labels: None,
        }
    }

    /// The index lines after the header, without their newlines.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8(self.index.clone())
            .expect("utf8 index")
            .lines()
            .skip(1)
            .map(str::to_string)
            .collect()
    }

    /// Replace the index with these lines (header added, each line terminated).
    pub fn set_lines(&mut self, lines: &[String]) {
        self.index = crate::craft::index_text(lines);
    }

    /// Regenerate every layer's canonical tar from the current index (which must decode) and
    /// the contents: what an honest writer would have stored for this index.
    pub fn regen_tars(&mut self) {
        let idx = Index::decode(&self.index).expect("the edited index still decodes");
        let n = idx.layer_count();
        self.tars = (0..n)
            .map(|k| {
                let mut out = Vec::new();
                for m in layout::members(idx.entries(), k) {
                    write_header(&mut out, &layout::header(&m)).expect("header");
                    if let Member::File(e) = m {
                        let body = &self.contents[&e.hash().expect("file hash")];
                        out.extend_from_slice(body);
                        out.extend(std::iter::repeat_n(0u8, padding(body.len() as u64)));
                    }
                }
                write_end(&mut out).expect("end");
                out
            })
            .collect();
    }

    /// The index line numbers (0-based, header excluded) whose type is `t` and layer `layer`.
    pub fn find(&self, t: &str, layer: Option<u32>) -> Vec<usize> {
        self.lines()
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let f: Vec<&str> = l.split('\t').collect();
                f[0] == t && layer.is_none_or(|k| f[3] == k.to_string())
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Encode everything as sitebundle would, apply the rule's edits, store it under `tag`.
    pub fn seal(&self, store: &Store, tag: &str) -> Crafted {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (n, t) in self.tars.iter().enumerate() {
            let mut enc = self.compression.encoder(Vec::new()).expect("encoder");
            enc.write_all(t).expect("compress");
            let mut blob = enc.finish().expect("finish");
            if n == 0 {
                let off = blob.len() as u64;
                blob.extend(trailer(self.compression, self.trailer, off, &self.index));
            }
            let d = store.put_blob(&blob).expect("put layer");
            layers.push(manifest::Descriptor {
                media_type: self.compression.media_type().into(),
                digest: d,
                size: blob.len() as u64,
                annotations: BTreeMap::new(),
            });
            diff_ids.push(Digest::of(t));
        }
        let (files, bytes) = self.labels.clone().unwrap_or_else(|| {
            let (f, b) = counts(&self.index);
            (f.to_string(), b.to_string())
        });
        let mut labels = BTreeMap::new();
        labels.insert(KEY_FORMAT.to_string(), "1".to_string());
        labels.insert(
            manifest::KEY_INDEX.to_string(),
            Digest::of(&self.index).to_string(),
        );
        labels.insert(KEY_FILES.to_string(), files);
        labels.insert(KEY_BYTES.to_string(), bytes);
        let config = ImageConfig {
            architecture: self.platform.1.clone(),
            config: RunConfig { labels },
            os: self.platform.0.clone(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids,
            },
            variant: None,
        };
        let mut cb = config.to_bytes();
        if let Some(e) = self.edit_config {
            e(&mut cb);
        }
        let id = store.put_blob(&cb).expect("put config");
        let mut annotations = BTreeMap::new();
        annotations.insert(KEY_FORMAT.to_string(), "1".to_string());
        let m = manifest::Manifest {
            schema_version: 2,
            media_type: manifest::MEDIA_MANIFEST.into(),
            config: manifest::Descriptor {
                media_type: manifest::MEDIA_CONFIG.into(),
                digest: id,
                size: cb.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations,
        };
        let mut mb = m.to_bytes();
        if let Some(e) = self.edit_manifest {
            e(&mut mb);
        }
        let manifest = store.put_blob(&mb).expect("put manifest");
        store
            .add_manifest(manifest, mb.len() as u64, id, &[tag.to_string()])
            .expect("record manifest");
        Crafted {
            manifest,
            manifest_size: mb.len() as u64,
            id,
        }
    }
}

/// Number of `f` lines and the sum of their sizes (read leniently: the index may be broken).
fn counts(index: &[u8]) -> (u64, u64) {
    String::from_utf8_lossy(index)
        .lines()
        .filter(|l| l.starts_with("f\t"))
        .map(|l| {
            l.split('\t')
                .nth(2)
                .and_then(|n| n.trim_start_matches('0').parse::<u64>().ok())
                .unwrap_or(0)
        })
        .fold((0, 0), |(n, b), s| (n + 1, b + s))
}

/// Layer 0's index trailer, written from the spec (not with the library's writer, so a rule can
/// vary it).
pub fn trailer(c: Compression, how: Trailer, offset: u64, index: &[u8]) -> Vec<u8> {
    let payload = match how {
        Trailer::TwoFrames => {
            let half = index.len() / 2;
            let mut p = zstd::bulk::compress(&index[..half], 3).expect("zstd");
            p.extend(zstd::bulk::compress(&index[half..], 3).expect("zstd"));
            p
        }
        _ => zstd::bulk::compress(index, 3).expect("zstd"),
    };
    let mut out = Vec::new();
    match c {
        Compression::Zstd => {
            let magic: u32 = if how == Trailer::OtherSkippableMagic {
                0x184D_2A50
            } else {
                0x184D_2A5E
            };
            out.extend(magic.to_le_bytes());
            out.extend((payload.len() as u32).to_le_bytes());
            out.extend(&payload);
            let frame_len = out.len() as u64;
            out.extend(0x184D_2A5Eu32.to_le_bytes());
            out.extend(24u32.to_le_bytes());
            out.extend(b"SBINDEX1");
            out.extend(offset.to_le_bytes());
            out.extend(frame_len.to_le_bytes());
        }
        Compression::Gzip => {
            for chunk in payload.chunks(65_531) {
                out.extend([0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff]);
                out.extend(((chunk.len() + 4) as u16).to_le_bytes());
                out.extend(b"SB");
                out.extend((chunk.len() as u16).to_le_bytes());
                out.extend(chunk);
                out.extend([0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
            }
            let len = out.len();
            out.extend([0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0xff]);
            out.extend(format!("SBINDEX1{offset:016x}{len:016x}").as_bytes());
            out.push(0);
            out.extend([0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
    }
    out
}

/// Offsets of the header blocks of the members of a tar (pax header blocks excluded), in order.
pub fn member_offsets(tar: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let b = &tar[pos..pos + 512];
        if b.iter().all(|&x| x == 0) {
            break;
        }
        let size = octal(&b[124..136]);
        if b[156] != b'x' {
            out.push(pos);
        }
        pos += 512 + size.div_ceil(512) * 512;
    }
    out
}

/// Offset of the end-of-archive blocks.
pub fn end_offset(tar: &[u8]) -> usize {
    let mut pos = 0;
    while pos + 512 <= tar.len() {
        let b = &tar[pos..pos + 512];
        if b.iter().all(|&x| x == 0) {
            return pos;
        }
        pos += 512 + octal(&b[124..136]).div_ceil(512) * 512;
    }
    pos
}

fn octal(f: &[u8]) -> usize {
    let s: String = f
        .iter()
        .take_while(|&&c| c != 0 && c != b' ')
        .map(|&c| c as char)
        .collect();
    usize::from_str_radix(&s, 8).unwrap_or(0)
}

/// Recompute the checksum of the header block at `pos` (the canonical form: 6 octal digits,
/// NUL, space).
pub fn fix_checksum(tar: &mut [u8], pos: usize) {
    let b = &mut tar[pos..pos + 512];
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// The first member of layer `k`'s tar whose header's type flag is `flag`.
fn member_with_flag(f: &Forge, k: usize, flag: u8) -> usize {
    member_offsets(&f.tars[k])
        .into_iter()
        .find(|&p| f.tars[k][p + 156] == flag)
        .expect("a member of that type")
}

/// Edit one field of a file header of layer 1 and fix its checksum.
fn patch_file_header(f: &mut Forge, edit: impl FnOnce(&mut [u8])) {
    let pos = member_with_flag(f, 1, b'0');
    edit(&mut f.tars[1][pos..pos + 512]);
    fix_checksum(&mut f.tars[1], pos);
}

fn line_edit(f: &mut Forge, i: usize, edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines = f.lines();
    let mut fields: Vec<String> = lines[i].split('\t').map(str::to_string).collect();
    edit(&mut fields);
    lines[i] = fields.join("\t");
    f.set_lines(&lines);
}

fn replace_once(b: &mut Vec<u8>, from: &str, to: &str) {
    let s = String::from_utf8(b.clone()).expect("utf8 json");
    assert!(s.contains(from), "{from:?} not in {s}");
    *b = s.replacen(from, to, 1).into_bytes();
}

/// One rule per MUST of spec §4-§9, plus the control (nothing broken).
pub const RULES: &[Rule] = &[
    Rule {
        name: "control",
        section: "-",
        what: "nothing broken: every reader accepts it, with the honest bundle id",
        expect: "",
        reference_reader: true,
        apply: |_| {},
    },
    // §4: the index.
    Rule {
        name: "index-crlf",
        section: "§4 rule 4",
        what: "index lines end in CRLF",
        expect: "control character",
        reference_reader: true,
        apply: |f| {
            let s = String::from_utf8(f.index.clone()).expect("utf8");
            let (head, body) = s.split_once('\n').expect("header");
            f.index = format!("{head}\n{}", body.replace('\n', "\r\n")).into_bytes();
        },
    },
    Rule {
        name: "index-header",
        section: "§4",
        what: "first line `sitebundle-index 2`",
        expect: "does not start with",
        reference_reader: true,
        apply: |f| {
            let s = String::from_utf8(f.index.clone()).expect("utf8");
            f.index = s
                .replacen("sitebundle-index 1", "sitebundle-index 2", 1)
                .into_bytes();
        },
    },
    Rule {
        name: "index-unterminated",
        section: "§4",
        what: "last line without its newline",
        expect: "not terminated",
        reference_reader: true,
        apply: |f| {
            f.index.pop();
        },
    },
    Rule {
        name: "index-unsorted",
        section: "§4 rule 1",
        what: "two lines swapped",
        expect: "not sorted",
        reference_reader: true,
        apply: |f| {
            let mut l = f.lines();
            let n = l.len();
            l.swap(n - 1, n - 2);
            f.set_lines(&l);
        },
    },
    Rule {
        name: "index-duplicate",
        section: "§4 rule 1",
        what: "a file listed twice",
        expect: "not sorted or duplicated",
        reference_reader: true,
        apply: |f| {
            let mut l = f.lines();
            let i = f.find("f", None)[0];
            l.insert(i, l[i].clone());
            f.set_lines(&l);
        },
    },
    Rule {
        name: "index-missing-parent",
        section: "§4 rule 2",
        what: "a directory holding files is not listed",
        expect: "is not a directory of the index",
        reference_reader: true,
        apply: |f| {
            let mut l = f.lines();
            let i = l
                .iter()
                .position(|x| x.starts_with("d\t") && x.ends_with("\tdocs"))
                .expect("docs dir");
            l.remove(i);
            f.set_lines(&l);
        },
    },
    Rule {
        name: "index-dir-above-layer-0",
        section: "§4 rule 3",
        what: "a directory in layer 1",
        expect: "not in layer 0",
        reference_reader: true,
        apply: |f| {
            let i = f.find("d", Some(0))[0];
            line_edit(f, i, |x| x[3] = "1".into());
        },
    },
    Rule {
        name: "index-file-in-layer-0",
        section: "§4 rule 3",
        what: "a file in layer 0",
        expect: "in layer 0",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[3] = "0".into());
        },
    },
    Rule {
        name: "index-mode-leading-zero",
        section: "§4 rule 4",
        what: "mode written 0644",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[1] = format!("0{}", x[1]));
        },
    },
    Rule {
        name: "index-size-leading-zero",
        section: "§4 rule 4",
        what: "size written with a leading zero",
        expect: "not a canonical number",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[2] = format!("0{}", x[2]));
        },
    },
    Rule {
        name: "index-hash-uppercase",
        section: "§4 rule 4",
        what: "BLAKE3 in upper case",
        expect: "bad blake3",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[4] = x[4].to_uppercase());
        },
    },
    Rule {
        name: "index-extra-field",
        section: "§4 rule 4",
        what: "a file line with a seventh field",
        expect: "wrong number of fields",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x.push("x".into()));
        },
    },
    Rule {
        name: "index-dotdot",
        section: "§4 rule 4 (§3)",
        what: "a path with a `..` component",
        expect: ". or .. component",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[5] = format!("../{}", x[5]));
        },
    },
    Rule {
        name: "index-layer-out-of-range",
        section: "§4 rule 5",
        what: "a file naming a layer the manifest does not have",
        expect: "names layer",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", None)[0];
            line_edit(f, i, |x| x[3] = "7".into());
        },
    },
    Rule {
        name: "index-dangling-link",
        section: "§4 rule 6 (§3)",
        what: "a symlink to a name the bundle does not have (tar changed to match)",
        expect: "does not exist",
        reference_reader: true,
        apply: |f| {
            let i = f.find("l", None)[0];
            // The tar keeps the old target: the index is refused before any layer is read.
            line_edit(f, i, |x| x[6] = "missing.html".into());
        },
    },
    // §5: the canonical tar (index honest, tar bytes changed, diff_id recomputed).
    Rule {
        name: "tar-uid",
        section: "§5",
        what: "a file header with uid 1000",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[108..116].copy_from_slice(b"0001750\0")),
    },
    Rule {
        name: "tar-uname",
        section: "§5",
        what: "a file header with user name `root`",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[265..269].copy_from_slice(b"root")),
    },
    Rule {
        name: "tar-mtime",
        section: "§5",
        what: "a file's mtime not derived from its content",
        expect: "does not match the index",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[136..148].copy_from_slice(b"16000000000\0")),
    },
    Rule {
        name: "tar-mode",
        section: "§5",
        what: "a file's mode 0664",
        expect: "does not match the index",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[100..108].copy_from_slice(b"0000664\0")),
    },
    Rule {
        name: "tar-devmajor",
        section: "§5",
        what: "a file header with a device number",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[329..337].copy_from_slice(b"0000001\0")),
    },
    Rule {
        name: "tar-prefix",
        section: "§5",
        what: "a path split into ustar prefix and name",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| {
            patch_file_header(f, |b| {
                let name: Vec<u8> = b[..100].iter().take_while(|&&c| c != 0).copied().collect();
                let cut = name
                    .iter()
                    .position(|&c| c == b'/')
                    .expect("a path with a dir");
                let (pre, rest) = (name[..cut].to_vec(), name[cut + 1..].to_vec());
                b[..100].fill(0);
                b[..rest.len()].copy_from_slice(&rest);
                b[345..345 + pre.len()].copy_from_slice(&pre);
            })
        },
    },
    Rule {
        name: "tar-gnu-magic",
        section: "§5",
        what: "GNU magic `ustar  \\0` instead of `ustar\\0` `00`",
        expect: "not a ustar header",
        reference_reader: true,
        apply: |f| patch_file_header(f, |b| b[257..265].copy_from_slice(b"ustar  \0")),
    },
    Rule {
        name: "tar-checksum-form",
        section: "§5",
        what: "checksum written as 7 digits and NUL (right value, other bytes)",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| {
            let pos = member_with_flag(f, 1, b'0');
            let t = &mut f.tars[1];
            let stored = String::from_utf8_lossy(&t[pos + 148..pos + 154]).to_string();
            t[pos + 148..pos + 156].copy_from_slice(format!("0{stored}\0").as_bytes());
        },
    },
    Rule {
        name: "tar-padding",
        section: "§5",
        what: "a non-zero byte in a file's block padding",
        expect: "padding",
        reference_reader: true,
        apply: |f| {
            let t = &mut f.tars[1];
            let pos = member_offsets(t)[0];
            let size = octal(&t[pos + 124..pos + 136]);
            assert!(!size.is_multiple_of(512), "the first file needs padding");
            t[pos + 512 + size] = b'x';
        },
    },
    Rule {
        name: "tar-pax-unneeded",
        section: "§5",
        what: "a pax header carrying a path that fits ustar",
        expect: "not canonical",
        reference_reader: true,
        apply: |f| {
            let t = &mut f.tars[1];
            let pos = member_offsets(t)[0];
            let name: Vec<u8> = t[pos..pos + 100]
                .iter()
                .take_while(|&&c| c != 0)
                .copied()
                .collect();
            let body = format!(" path={}\n", String::from_utf8_lossy(&name));
            let mut len = body.len() + 1;
            while format!("{len}{body}").len() != len {
                len += 1;
            }
            let rec = format!("{len}{body}").into_bytes();
            let mut pax = t[pos..pos + 512].to_vec();
            pax[..100].fill(0);
            pax[..14].copy_from_slice(b"././@PaxHeader");
            pax[100..108].copy_from_slice(b"0000644\0");
            pax[124..136].copy_from_slice(format!("{:011o}\0", rec.len()).as_bytes());
            pax[156] = b'x';
            let mut block = pax;
            block.extend(&rec);
            block.extend(std::iter::repeat_n(0u8, padding(rec.len() as u64)));
            fix_checksum(&mut block, 0);
            t.splice(pos..pos, block);
        },
    },
    Rule {
        name: "tar-dir-no-slash",
        section: "§5",
        what: "a directory name without its trailing slash",
        expect: "without trailing slash",
        reference_reader: true,
        apply: |f| {
            let pos = member_with_flag(f, 0, b'5');
            let t = &mut f.tars[0];
            let end = t[pos..pos + 100].iter().position(|&c| c == 0).expect("nul") - 1;
            t[pos + end] = 0;
            fix_checksum(t, pos);
        },
    },
    Rule {
        name: "tar-extra-zero-block",
        section: "§5",
        what: "a third zero block after the end of the archive",
        expect: "after the end of the tar archive",
        reference_reader: true,
        apply: |f| f.tars[1].extend([0u8; 512]),
    },
    Rule {
        name: "tar-no-end",
        section: "§5",
        what: "the two end-of-archive blocks missing",
        expect: "truncated",
        reference_reader: true,
        apply: |f| {
            let n = f.tars[1].len();
            f.tars[1].truncate(n - 1024);
        },
    },
    Rule {
        name: "tar-extra-member",
        section: "§5",
        what: "a file in a layer that the index does not list",
        expect: "does not list",
        reference_reader: true,
        apply: |f| {
            let end = end_offset(&f.tars[1]);
            let mut extra = Vec::new();
            let body = b"<p>extra</p>\n";
            write_header(
                &mut extra,
                &bundle::tar::TarHeader {
                    path: "zzz-extra.html".into(),
                    kind: bundle::tar::TarKind::File,
                    mode: 0o644,
                    size: body.len() as u64,
                    mtime: bundle::tar::content_mtime(&FileHash::of(body).0),
                    link: String::new(),
                },
            )
            .expect("header");
            extra.extend(body);
            extra.extend(std::iter::repeat_n(0u8, padding(body.len() as u64)));
            f.tars[1].splice(end..end, extra);
        },
    },
    Rule {
        name: "tar-member-order",
        section: "§5 (§6 order)",
        what: "two members of a layer swapped",
        expect: "does not match the index",
        reference_reader: true,
        apply: |f| {
            let t = &f.tars[0];
            let offs = member_offsets(t);
            let end = end_offset(t);
            let (a, b, c) = (offs[0], offs[1], *offs.get(2).unwrap_or(&end));
            let mut out = t[..a].to_vec();
            out.extend(&t[b..c]);
            out.extend(&t[a..b]);
            out.extend(&t[c..]);
            f.tars[0] = out;
        },
    },
    // §6: grouping and contents (index and tars changed together, both consistent).
    Rule {
        name: "group-file-moved",
        section: "§6",
        what: "a binary file moved into the text layer",
        expect: "not in the layers spec §6 gives",
        reference_reader: true,
        apply: |f| {
            let i = f.find("f", Some(2))[0];
            line_edit(f, i, |x| x[3] = "1".into());
            // Keep layer 2 non-empty: it has more than one binary file.
            f.regen_tars();
        },
    },
    Rule {
        name: "group-content-split",
        section: "§6",
        what: "two paths of one content in different layers",
        expect: "a content and all its paths are in one layer",
        reference_reader: true,
        apply: |f| {
            // The second copy of the duplicated CSS moves to the binary layer.
            let l = f.lines();
            let hash = l[f
                .find("f", Some(1))
                .into_iter()
                .find(|&i| {
                    l.iter()
                        .filter(|x| x.split('\t').nth(4) == l[i].split('\t').nth(4))
                        .count()
                        > 1
                })
                .expect("a duplicated text file")]
            .split('\t')
            .nth(4)
            .expect("hash")
            .to_string();
            let second = l
                .iter()
                .enumerate()
                .filter(|(_, x)| x.split('\t').nth(4) == Some(hash.as_str()))
                .nth(1)
                .expect("second copy")
                .0;
            line_edit(f, second, |x| x[3] = "2".into());
            f.regen_tars();
        },
    },
    Rule {
        name: "group-duplicate-stored-twice",
        section: "§6",
        what: "a duplicate stored as a second regular file instead of a hard link",
        expect: "is not a hard link",
        reference_reader: true,
        apply: |f| {
            let lines = f.lines();
            let t = &mut f.tars[1];
            let offs = member_offsets(t);
            let pos = offs
                .into_iter()
                .find(|&p| t[p + 156] == b'1')
                .expect("a hard link in layer 1");
            let link: Vec<u8> = t[pos + 157..pos + 257]
                .iter()
                .take_while(|&&c| c != 0)
                .copied()
                .collect();
            let name: Vec<u8> = t[pos..pos + 100]
                .iter()
                .take_while(|&&c| c != 0)
                .copied()
                .collect();
            let canon = String::from_utf8(link).expect("utf8");
            let line = lines
                .iter()
                .find(|x| x.ends_with(&format!("\t{canon}")))
                .expect("canon line");
            let h = FileHash::parse_hex(line.split('\t').nth(4).expect("hash")).expect("hex");
            let content = f.contents[&h].clone();
            let mut block = Vec::new();
            write_header(
                &mut block,
                &bundle::tar::TarHeader {
                    path: String::from_utf8(name).expect("utf8"),
                    kind: bundle::tar::TarKind::File,
                    mode: 0o644,
                    size: content.len() as u64,
                    mtime: bundle::tar::content_mtime(&FileHash::of(&content).0),
                    link: String::new(),
                },
            )
            .expect("header");
            block.extend(&content);
            block.extend(std::iter::repeat_n(0u8, padding(content.len() as u64)));
            t.splice(pos..pos + 512, block);
        },
    },
    Rule {
        name: "group-link-to-other-copy",
        section: "§6",
        what: "a hard link to a copy that is not the content's first path",
        expect: "is not a hard link",
        reference_reader: true,
        apply: |f| {
            // With three copies a, b, c: c links to b instead of a.
            let t = &mut f.tars[1];
            let links: Vec<usize> = member_offsets(t)
                .into_iter()
                .filter(|&p| t[p + 156] == b'1')
                .collect();
            assert!(
                links.len() >= 2,
                "the site needs a content with three paths"
            );
            let first_name: Vec<u8> = t[links[0]..links[0] + 100]
                .iter()
                .take_while(|&&c| c != 0)
                .copied()
                .collect();
            let p = links[1];
            t[p + 157..p + 257].fill(0);
            t[p + 157..p + 157 + first_name.len()].copy_from_slice(&first_name);
            fix_checksum(t, p);
        },
    },
    // §7: trailer, config, manifest.
    Rule {
        name: "trailer-two-frames",
        section: "§7",
        what: "the index payload in two zstd frames",
        expect: "more than one zstd frame",
        reference_reader: true,
        apply: |f| f.trailer = Trailer::TwoFrames,
    },
    Rule {
        name: "trailer-other-magic",
        section: "§7",
        what: "the zstd index frame with skippable magic 0x184D2A50 instead of 0x184D2A5E",
        expect: "not a skippable frame",
        reference_reader: true,
        apply: |f| f.trailer = Trailer::OtherSkippableMagic,
    },
    Rule {
        name: "config-pretty",
        section: "§7",
        what: "the config pretty-printed",
        expect: "not in canonical form",
        reference_reader: true,
        apply: |f| {
            f.edit_config = Some(|b| {
                let v: serde_json::Value = serde_json::from_slice(b).expect("json");
                *b = serde_json::to_vec_pretty(&v).expect("json");
            })
        },
    },
    Rule {
        name: "config-space",
        section: "§7",
        what: "one space after a comma in diff_ids (the old spec example)",
        expect: "not in canonical form",
        reference_reader: true,
        apply: |f| f.edit_config = Some(|b| replace_once(b, "\",\"sha256:", "\", \"sha256:")),
    },
    Rule {
        name: "config-reordered",
        section: "§7",
        what: "members reordered (os first)",
        expect: "not in canonical form",
        reference_reader: true,
        apply: |f| {
            f.edit_config = Some(|b| {
                replace_once(b, ",\"os\":\"linux\"", "");
                replace_once(b, "{\"architecture\"", "{\"os\":\"linux\",\"architecture\"");
            })
        },
    },
    Rule {
        name: "config-extra-label",
        section: "§7",
        what: "a label the format does not define",
        expect: "which the format does not define",
        reference_reader: true,
        apply: |f| {
            f.edit_config =
                Some(|b| replace_once(b, "{\"Labels\":{", "{\"Labels\":{\"com.example.x\":\"y\","))
        },
    },
    Rule {
        name: "config-extra-member",
        section: "§7",
        what: "a `created` member",
        expect: "unknown field",
        reference_reader: true,
        apply: |f| {
            f.edit_config = Some(|b| {
                replace_once(
                    b,
                    ",\"os\":",
                    ",\"created\":\"2025-01-01T00:00:00Z\",\"os\":",
                )
            })
        },
    },
    Rule {
        name: "config-files-label",
        section: "§7",
        what: "dev.sitebundle.files one more than the index's files",
        expect: "labels say",
        reference_reader: true,
        apply: |f| {
            let (n, b) = counts(&f.index);
            f.labels = Some(((n + 1).to_string(), b.to_string()));
        },
    },
    Rule {
        name: "config-bytes-label",
        section: "§7",
        what: "dev.sitebundle.bytes one more than the files' sizes",
        expect: "labels say",
        reference_reader: true,
        apply: |f| {
            let (n, b) = counts(&f.index);
            f.labels = Some((n.to_string(), (b + 1).to_string()));
        },
    },
    Rule {
        name: "config-files-leading-zero",
        section: "§7",
        what: "dev.sitebundle.files written with a leading zero",
        expect: "canonical decimal",
        reference_reader: true,
        apply: |f| {
            let (n, b) = counts(&f.index);
            f.labels = Some((format!("0{n}"), b.to_string()));
        },
    },
    Rule {
        name: "config-arch-with-variant",
        section: "§7",
        what: "architecture `arm64/v8` (the variant belongs in `variant`)",
        expect: "is not 1 to 32 of",
        reference_reader: true,
        apply: |f| f.platform.1 = "arm64/v8".into(),
    },
    Rule {
        name: "config-duplicate-key",
        section: "§7",
        what: "`os` given twice",
        expect: "duplicate field",
        reference_reader: true,
        apply: |f| {
            f.edit_config =
                Some(|b| replace_once(b, ",\"os\":\"linux\"", ",\"os\":\"linux\",\"os\":\"linux\""))
        },
    },
    Rule {
        name: "config-rootfs-type",
        section: "§9",
        what: "rootfs.type `layered`",
        expect: "rootfs.type",
        reference_reader: true,
        apply: |f| {
            f.edit_config = Some(|b| replace_once(b, "\"type\":\"layers\"", "\"type\":\"layered\""))
        },
    },
    Rule {
        name: "config-diff-ids-count",
        section: "§9",
        what: "one diff_id more than layers",
        expect: "diff_ids for",
        reference_reader: true,
        apply: |f| {
            f.edit_config = Some(|b| {
                replace_once(
                    b,
                    "\"diff_ids\":[",
                    "\"diff_ids\":[\"sha256:0000000000000000000000000000000000000000000000000000000000000000\",",
                )
            })
        },
    },
    Rule {
        name: "manifest-subject",
        section: "§7",
        what: "a `subject`",
        expect: "has a subject",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                replace_once(
                    b,
                    ",\"annotations\":",
                    ",\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\",\"size\":2},\"annotations\":",
                )
            })
        },
    },
    Rule {
        name: "manifest-artifact-type",
        section: "§7",
        what: "an `artifactType`",
        expect: "artifactType",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                replace_once(
                    b,
                    ",\"config\":",
                    ",\"artifactType\":\"application/x-site\",\"config\":",
                )
            })
        },
    },
    Rule {
        name: "manifest-urls",
        section: "§7",
        what: "`urls` in a layer descriptor",
        expect: "unknown field `urls`",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                let s = String::from_utf8(b.clone()).expect("utf8");
                let at = s.find("\"layers\":[").expect("layers");
                let close = at + s[at..].find('}').expect("end of descriptor");
                let mut out = s[..close].to_string();
                out.push_str(",\"urls\":[\"https://example.invalid/blob\"]");
                out.push_str(&s[close..]);
                *b = out.into_bytes();
            })
        },
    },
    Rule {
        name: "manifest-duplicate-key",
        section: "§7",
        what: "an annotation key given twice",
        expect: "appears twice",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                replace_once(
                    b,
                    "{\"dev.sitebundle.format\":\"1\"}",
                    "{\"dev.sitebundle.format\":\"1\",\"dev.sitebundle.format\":\"1\"}",
                )
            })
        },
    },
    Rule {
        name: "manifest-extra-member",
        section: "§7",
        what: "a member the spec does not list",
        expect: "unknown field",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest =
                Some(|b| replace_once(b, ",\"config\":", ",\"x-extra\":1,\"config\":"))
        },
    },
    Rule {
        name: "manifest-format-2",
        section: "§9",
        what: "annotation dev.sitebundle.format `2`",
        expect: "not supported",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                replace_once(
                    b,
                    "{\"dev.sitebundle.format\":\"1\"}",
                    "{\"dev.sitebundle.format\":\"2\"}",
                )
            })
        },
    },
    Rule {
        name: "manifest-foreign-layer",
        section: "§9",
        what: "a layer media type no reader knows",
        expect: "unsupported media type",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                let s = String::from_utf8(b.clone()).expect("utf8");
                let at = s.find("\"layers\":[{\"mediaType\":\"").expect("layers") + 24;
                let end = at + s[at..].find('"').expect("end");
                *b = format!(
                    "{}application/vnd.oci.image.layer.nondistributable.v1.tar+gzip{}",
                    &s[..at],
                    &s[end..]
                )
                .into_bytes();
            })
        },
    },
    Rule {
        name: "manifest-layer-size",
        section: "§9",
        what: "a layer descriptor's size one byte too large",
        expect: "descriptor says",
        reference_reader: true,
        apply: |f| {
            f.edit_manifest = Some(|b| {
                let s = String::from_utf8(b.clone()).expect("utf8");
                let at = s.rfind("\"size\":").expect("size") + 7;
                let end = at + s[at..].find('}').expect("end");
                let n: u64 = s[at..end].parse().expect("number");
                *b = format!("{}{}{}", &s[..at], n + 1, &s[end..]).into_bytes();
            })
        },
    },
];

/// Whether `rule` applies to bundles compressed with `c` (most apply to both).
pub fn applies(rule: &Rule, c: Compression) -> bool {
    !(rule.name == "trailer-other-magic" && c == Compression::Gzip)
}
