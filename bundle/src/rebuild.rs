//! Rebuilding the index of a copy whose layer 0 lost its trailer.
//!
//! Registries and their tools re-compress layers (`podman push`, `skopeo copy
//! --dest-compress-format`): the tar streams, hence the `diff_id`s and the config, hence the
//! bundle id, are unchanged, but a re-compressed layer 0 no longer carries the index (a zstd
//! skippable frame or an empty gzip member does not survive decompression). The index is a pure
//! function of the layers' tar streams, so a reader rebuilds it: every layer is read once
//! (checking its `diff_id` and blob digest on the way), each entry gives its index line, and the
//! lines are merged in path order. The result must hash to the config's `dev.sitebundle.index`
//! like a trailer would; it is then checked by every rule of the spec as any index is.
//!
//! Memory stays bounded whatever the layers hold: lines go to an unnamed temporary file (in
//! `$TMPDIR`), one sorted run per layer (and one for its hard links, whose size and hash are
//! those of the file they name, looked up in the layer's own run); the runs are merged with a
//! small buffer each. The work stops as soon as the entries, files, bytes or index size pass the
//! config's labels or the limits of [`crate::limits`].

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::sync::Arc;

use sha2::Digest as _;

use crate::compress::LayerDecoder;
use crate::digest::{Digest, FileHash, HashingReader};
use crate::error::{Error, Result};
use crate::index::INDEX_HEADER;
use crate::limits::{IN_MEMORY_INDEX_BYTES, MAX_ENTRIES, MAX_INDEX_BYTES};
use crate::manifest::BundleMeta;
use crate::path::SitePath;
use crate::pathkey::{PathHasher, PathKey};
use crate::store::BlobSource;
use crate::tar::{TarKind, TarReader};
use crate::view::{PosReader, Source};

const WHAT: &str = "index rebuilt from the layers";

/// A sorted run of index lines in the spill file.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    len: u64,
}

/// The spill file and how much of it is written.
struct Spill {
    file: Arc<File>,
    out: BufWriter<File>,
    written: u64,
}

fn local(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::Io {
        op,
        path: std::env::temp_dir(),
        source: e,
    }
}

impl Spill {
    fn new() -> Result<Spill> {
        let f = tempfile::tempfile().map_err(local("create a temporary file in"))?;
        let file = Arc::new(f.try_clone().map_err(local("open a temporary file in"))?);
        Ok(Spill {
            file,
            out: BufWriter::with_capacity(256 * 1024, f),
            written: 0,
        })
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        self.out
            .write_all(b)
            .map_err(local("write a temporary file in"))?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(local("write a temporary file in"))
    }

    fn reader(&self, run: Run, capacity: usize) -> BufReader<PosReader> {
        BufReader::with_capacity(
            capacity,
            PosReader::new(self.file.clone(), run.start, run.len),
        )
    }
}

/// Running totals, checked against the labels and the limits as lines are produced.
struct Budget<'a> {
    meta: &'a BundleMeta,
    entries: u64,
    files: u64,
    bytes: u64,
    index_bytes: u64,
}

impl Budget<'_> {
    fn line(&mut self, len: usize) -> Result<()> {
        self.entries += 1;
        self.index_bytes += len as u64;
        if self.entries > MAX_ENTRIES || self.index_bytes > MAX_INDEX_BYTES {
            return Err(Error::corrupt(
                WHAT,
                "the layers hold more entries than an index may list",
            ));
        }
        Ok(())
    }

    fn file(&mut self, size: u64) -> Result<()> {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        let l = &self.meta.labels;
        if self.files > l.files || self.bytes > l.bytes {
            return Err(Error::corrupt(
                WHAT,
                format!(
                    "the layers hold more than the {} files of {} bytes the config declares",
                    l.files, l.bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The 6th field (the path) of an index line.
fn path_field(line: &[u8]) -> &[u8] {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    body.split(|&b| b == b'\t').nth(5).unwrap_or_default()
}

/// Rebuild the index of `meta`'s bundle from its layers (see the module docs).
pub(crate) fn rebuild(source: &dyn BlobSource, meta: &BundleMeta) -> Result<Source> {
    let mut spill = Spill::new()?;
    let mut runs: Vec<Run> = Vec::new();
    let mut budget = Budget {
        meta,
        entries: 0,
        files: 0,
        bytes: 0,
        index_bytes: INDEX_HEADER.len() as u64 + 1,
    };
    let mut link_spill = Spill::new()?;
    let hasher = PathHasher::new();
    for n in 0..meta.manifest.layers.len() {
        let (plain, links) = read_layer(source, meta, n, &mut spill, &mut link_spill, &mut budget)?;
        runs.push(plain);
        if links.len > 0 {
            link_spill.flush()?;
            let resolved = resolve_hardlinks(
                &mut spill,
                &link_spill,
                plain,
                links,
                n,
                &hasher,
                &mut budget,
            )?;
            runs.push(resolved);
        }
    }
    spill.flush()?;
    merge(&spill, &runs, meta)
}

/// Read layer `n`, check its `diff_id` and blob digest, and write its index lines (a run sorted
/// as the tar is) and its hard links (`path \t link \n`, another run).
fn read_layer(
    source: &dyn BlobSource,
    meta: &BundleMeta,
    n: usize,
    spill: &mut Spill,
    link_spill: &mut Spill,
    budget: &mut Budget<'_>,
) -> Result<(Run, Run)> {
    let desc = &meta.manifest.layers[n];
    let what = format!("layer {n} ({})", desc.digest);
    let raw = source.open_blob(&desc.digest)?;
    let blob = BufReader::with_capacity(256 * 1024, HashingReader::new(raw.take(desc.size + 1)));
    let dec = LayerDecoder::new(meta.encodings[n], blob)
        .map_err(|e| Error::corrupt(what.clone(), format!("cannot start decompression: {e}")))?;
    let mut tar = TarReader::new(HashingReader::new(dec), what.clone());
    let start = spill.written;
    let lstart = link_spill.written;
    let mut line = Vec::with_capacity(256);
    while let Some(h) = tar.next_header()? {
        SitePath::check(&h.path).map_err(|e| Error::corrupt(what.clone(), e.to_string()))?;
        if h.link.chars().any(|c| c.is_control()) {
            return Err(Error::corrupt(
                what.clone(),
                format!("{:?} links to a name with a control character", h.path),
            ));
        }
        line.clear();
        match h.kind {
            TarKind::Dir => {
                let _ = writeln!(line, "d\t755\t0\t{n}\t-\t{}", h.path);
            }
            TarKind::Symlink => {
                let _ = writeln!(line, "l\t777\t0\t{n}\t-\t{}\t{}", h.path, h.link);
            }
            TarKind::File => {
                budget.file(h.size)?;
                let mut hasher = blake3::Hasher::new();
                tar.copy_content(&mut HashSink(&mut hasher))?;
                let exec = if h.mode & 0o111 != 0 { "755" } else { "644" };
                let hash = FileHash::from(hasher.finalize());
                let _ = writeln!(
                    line,
                    "f\t{exec}\t{}\t{n}\t{}\t{}",
                    h.size,
                    hash.hex(),
                    h.path
                );
            }
            TarKind::HardLink => {
                let _ = writeln!(line, "{}\t{}", h.path, h.link);
                budget.line(0)?;
                link_spill.write(&line)?;
                continue;
            }
        }
        budget.line(line.len())?;
        spill.write(&line)?;
    }
    let mut rest = tar.into_inner();
    let mut probe = [0u8; 1];
    if rest
        .read(&mut probe)
        .map_err(|e| Error::corrupt(what.clone(), format!("decompression failed: {e}")))?
        != 0
    {
        return Err(Error::corrupt(
            what,
            "data after the end of the tar archive",
        ));
    }
    let (dec, diff_id, _) = rest.into_parts();
    if diff_id != meta.config.rootfs.diff_ids[n] {
        return Err(Error::DigestMismatch {
            what: format!("layer {n} diff_id"),
            expected: meta.config.rootfs.diff_ids[n],
            found: diff_id,
        });
    }
    let mut blob = dec.into_inner();
    io::copy(&mut blob, &mut io::sink())
        .map_err(|e| Error::corrupt(what.clone(), format!("read failed: {e}")))?;
    let (found, len) = blob.into_inner().finish();
    if found != desc.digest || len != desc.size {
        return Err(Error::DigestMismatch {
            what: format!(
                "layer {n} blob ({len} bytes, descriptor says {})",
                desc.size
            ),
            expected: desc.digest,
            found,
        });
    }
    let plain = Run {
        start,
        len: spill.written - start,
    };
    Ok((
        plain,
        Run {
            start: lstart,
            len: link_spill.written - lstart,
        },
    ))
}

/// Turn layer `n`'s hard links (`path \t link` records) into index lines: each takes the mode,
/// size and hash of the file line of its link name in the layer's own run.
fn resolve_hardlinks(
    spill: &mut Spill,
    link_spill: &Spill,
    plain: Run,
    links: Run,
    n: usize,
    hasher: &PathHasher,
    budget: &mut Budget<'_>,
) -> Result<Run> {
    spill.flush()?;
    let mut wanted: Vec<PathKey> = Vec::new();
    let mut r = link_spill.reader(links, 64 * 1024);
    let mut rec = Vec::new();
    loop {
        rec.clear();
        if r.read_until(b'\n', &mut rec)
            .map_err(local("read a temporary file in"))?
            == 0
        {
            break;
        }
        let body = rec.strip_suffix(b"\n").unwrap_or(&rec);
        let link = body.split(|&b| b == b'\t').nth(1).unwrap_or_default();
        wanted.push(hasher.path(&String::from_utf8_lossy(link)));
    }
    wanted.sort_unstable();
    wanted.dedup();
    // (exec field, size, hash) of each wanted name, as its file line says.
    let mut found: Vec<Option<(bool, u64, FileHash)>> = vec![None; wanted.len()];
    let mut r = spill.reader(plain, 64 * 1024);
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)
            .map_err(local("read a temporary file in"))?
            == 0
        {
            break;
        }
        if !line.starts_with(b"f\t") {
            continue;
        }
        let key = hasher.path(&String::from_utf8_lossy(path_field(&line)));
        if let Ok(i) = wanted.binary_search(&key) {
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let f: Vec<&[u8]> = body.split(|&b| b == b'\t').collect();
            let size = std::str::from_utf8(f[2]).ok().and_then(|s| s.parse().ok());
            let hash = std::str::from_utf8(f[4]).ok().and_then(FileHash::parse_hex);
            if let (Some(size), Some(hash)) = (size, hash) {
                found[i] = Some((f[1] == b"755", size, hash));
            }
        }
    }
    let start = spill.written;
    let mut r = link_spill.reader(links, 64 * 1024);
    let mut out = Vec::new();
    loop {
        rec.clear();
        if r.read_until(b'\n', &mut rec)
            .map_err(local("read a temporary file in"))?
            == 0
        {
            break;
        }
        let body = rec.strip_suffix(b"\n").unwrap_or(&rec);
        let mut parts = body.splitn(2, |&b| b == b'\t');
        let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let link = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let key = hasher.path(&link);
        let target = wanted
            .binary_search(&key)
            .ok()
            .and_then(|i| found[i])
            .ok_or_else(|| {
                Error::corrupt(
                    WHAT,
                    format!("hard link {path} -> {link}: layer {n} stores no such file"),
                )
            })?;
        let (exec, size, hash) = target;
        out.clear();
        let mode = if exec { "755" } else { "644" };
        let _ = writeln!(out, "f\t{mode}\t{size}\t{n}\t{}\t{path}", hash.hex());
        budget.index_bytes += out.len() as u64;
        budget.file(size)?;
        if budget.index_bytes > MAX_INDEX_BYTES {
            return Err(Error::corrupt(WHAT, "larger than an index may be"));
        }
        spill.write(&out)?;
    }
    spill.flush()?;
    Ok(Run {
        start,
        len: spill.written - start,
    })
}

/// Merge the sorted runs by path into the index, hash it, and keep it in memory when small.
fn merge(spill: &Spill, runs: &[Run], meta: &BundleMeta) -> Result<Source> {
    let mut readers: Vec<BufReader<PosReader>> =
        runs.iter().map(|&r| spill.reader(r, 32 * 1024)).collect();
    let mut heads: Vec<Vec<u8>> = vec![Vec::new(); runs.len()];
    let mut heap = BinaryHeap::new();
    let next = |r: &mut BufReader<PosReader>, buf: &mut Vec<u8>| -> Result<bool> {
        buf.clear();
        Ok(r.read_until(b'\n', buf)
            .map_err(local("read a temporary file in"))?
            > 0)
    };
    for (i, r) in readers.iter_mut().enumerate() {
        if next(r, &mut heads[i])? {
            heap.push(std::cmp::Reverse((path_field(&heads[i]).to_vec(), i)));
        }
    }
    let out_file = tempfile::tempfile().map_err(local("create a temporary file in"))?;
    let shared = Arc::new(
        out_file
            .try_clone()
            .map_err(local("open a temporary file in"))?,
    );
    let mut out = BufWriter::with_capacity(256 * 1024, out_file);
    let mut sha = sha2::Sha256::new();
    let mut len = 0u64;
    let mut memory: Option<Vec<u8>> = Some(Vec::new());
    let mut emit = |b: &[u8]| -> Result<()> {
        out.write_all(b)
            .map_err(local("write a temporary file in"))?;
        sha.update(b);
        len += b.len() as u64;
        if let Some(m) = &mut memory {
            if (m.len() + b.len()) as u64 <= IN_MEMORY_INDEX_BYTES {
                m.extend_from_slice(b);
            } else {
                memory = None;
            }
        }
        Ok(())
    };
    emit(format!("{INDEX_HEADER}\n").as_bytes())?;
    while let Some(std::cmp::Reverse((_, i))) = heap.pop() {
        emit(&heads[i])?;
        if next(&mut readers[i], &mut heads[i])? {
            heap.push(std::cmp::Reverse((path_field(&heads[i]).to_vec(), i)));
        }
    }
    out.flush().map_err(local("write a temporary file in"))?;
    let found = Digest::from_bytes(sha.finalize().into());
    if found != meta.labels.index {
        return Err(Error::DigestMismatch {
            what: WHAT.into(),
            expected: meta.labels.index,
            found,
        });
    }
    Ok(match memory {
        Some(m) => Source::Memory(Arc::new(m)),
        None => Source::Spill { file: shared, len },
    })
}

/// Feeds bytes to a BLAKE3 hasher.
struct HashSink<'a>(&'a mut blake3::Hasher);

impl Write for HashSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
