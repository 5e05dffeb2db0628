//! Reading one layer and checking every byte of it: the core of `verify` and `extract`.
//!
//! A layer's tar stream is a function of the index (see [`crate::layout`]), so the reader does not
//! interpret the stream: it regenerates the expected header of every member from the index,
//! streamed ([`crate::view`]), and requires the stream to match it exactly, in order. That rules
//! out `..`, absolute paths, unexpected types, symlink-then-write tricks and extra files by
//! construction. File contents are read only up to the size the index declares, so a
//! decompression bomb cannot make the reader do more work than the index announces. After the
//! end-of-archive marker the stream must end; the `diff_id` and the blob digest (over the whole
//! blob, trailer included) are then compared with the config and manifest.
//!
//! Matching parsed headers is not enough for canonical bytes: parsing ignores header fields it
//! does not use (uid/gid, user names, device numbers). So each header's raw bytes must equal the
//! canonical ones, and the tar reader refuses non-zero padding and anything but two zero blocks
//! at the end. Contents are the verified bytes themselves, so the stream read *is* the canonical
//! stream: one site, one byte form, one `diff_id`, with no second hash over the contents.
//!
//! A hard link's name is the canonical path of its content, which the reader does not keep (it
//! may be anywhere earlier in the layer): the view gives its keyed hash instead
//! ([`crate::pathkey`]), the link name in the stream must hash to it, and the expected header is
//! then built with that name.
//!
//! [`run_layers`] decides how the layers' index lines reach their checks: from the index in
//! memory, or, when it is too large to keep, collected for a batch of layers in one pass (at
//! most [`crate::limits::LAYER_BATCH_BYTES`]), or streamed again for a layer larger than that.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use rayon::prelude::*;

use crate::compress::LayerDecoder;
use crate::digest::{FileHash, HashingReader};
use crate::error::{Error, Result};
use crate::index::{EntryRef, KindRef};
use crate::iotrap::{IoSide, IoTrap};
use crate::reader::Bundle;
use crate::store::BlobSource;
use crate::tar::{content_mtime, TarHeader, TarKind, TarReader, EPOCH_BASE};
use crate::view::LayerMember;

/// What to do with each member as it is read and checked.
pub(crate) trait MemberSink {
    /// Where the content of file `e` goes (`io::sink()` to only verify).
    fn open_file(&mut self, e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>>;
    /// Called after a file's content was written and its hash checked.
    fn file_done(&mut self, _e: &EntryRef<'_>) -> Result<()> {
        Ok(())
    }
    /// A hardlink from `e` to `canon`, the earlier path of the same content in this layer.
    fn hardlink(&mut self, _e: &EntryRef<'_>, _canon: &str) -> Result<()> {
        Ok(())
    }
    /// Where the content of `e` is written, for an I/O error message.
    fn location(&self, e: &EntryRef<'_>) -> PathBuf {
        e.path.into()
    }
}

/// A sink that only verifies.
pub(crate) struct VerifyOnly;

impl MemberSink for VerifyOnly {
    fn open_file(&mut self, _e: &EntryRef<'_>) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(io::sink()))
    }
}

/// Where a layer check gets its index lines.
pub(crate) enum LayerLines<'a> {
    /// A pass over the whole index, keeping this layer's lines.
    Index,
    /// This layer's lines, collected beforehand ([`crate::view::IndexView::collect_layers`]).
    Buffer(&'a [u8]),
}

/// The canonical header of an index entry (for a hard link: linking to `link`).
fn expected_header(e: &EntryRef<'_>, link: Option<&str>) -> TarHeader {
    let (kind, size, mtime, link) = match (e.kind, link) {
        (KindRef::Dir, _) => (TarKind::Dir, 0, EPOCH_BASE, String::new()),
        (KindRef::Symlink { target }, _) => (TarKind::Symlink, 0, EPOCH_BASE, target.to_string()),
        (KindRef::File { hash, .. }, Some(l)) => {
            (TarKind::HardLink, 0, content_mtime(&hash.0), l.to_string())
        }
        (KindRef::File { size, hash, .. }, None) => {
            (TarKind::File, size, content_mtime(&hash.0), String::new())
        }
    };
    TarHeader {
        path: e.path.to_string(),
        kind,
        mode: e.mode(),
        size,
        mtime,
        link,
    }
}

/// Read layer `n` of `bundle` from `source`, checking everything, feeding members to `sink`.
/// Returns the number of content bytes read.
///
/// Issue 8: the tar reader and the decompressor turn every `io::Error` they see into "corrupt",
/// so a full disk under the sink (ENOSPC while extracting) or a failing disk under the store
/// (EIO) was reported as tampering (exit 3, "fetch the bundle again"). Both ends are therefore
/// wrapped in an [`IoTrap`]: an error raised by the blob's reader or by the sink's writer is a
/// local I/O error ([`Error::Io`], naming the path), whatever the code above it made of it; only
/// bytes that were read and do not match remain an integrity error.
pub(crate) fn check_layer(
    source: &dyn BlobSource,
    bundle: &Bundle,
    n: usize,
    lines: &LayerLines<'_>,
    sink: &mut dyn MemberSink,
    progress: &dyn crate::progress::Progress,
) -> Result<u64> {
    let trap = IoTrap::default();
    let digest = bundle.meta.manifest.layers[n].digest;
    check_layer_trapped(source, bundle, n, lines, sink, progress, &trap)
        .map_err(|e| trap.reclassify(e, || source.location(&digest)))
}

fn check_layer_trapped(
    source: &dyn BlobSource,
    bundle: &Bundle,
    n: usize,
    lines: &LayerLines<'_>,
    sink: &mut dyn MemberSink,
    progress: &dyn crate::progress::Progress,
    trap: &IoTrap,
) -> Result<u64> {
    let desc = &bundle.meta.manifest.layers[n];
    let what = format!("layer {n} ({})", desc.digest);
    let raw = trap.reader(source.open_blob(&desc.digest)?);
    let blob = BufReader::with_capacity(256 * 1024, HashingReader::new(raw.take(desc.size + 1)));
    let dec = LayerDecoder::new(bundle.meta.encodings[n], blob)
        .map_err(|e| Error::corrupt(what.clone(), format!("cannot start decompression: {e}")))?;
    let mut tar = TarReader::new(HashingReader::new(dec), what.clone());
    let mut content = 0u64;
    let mut expected_raw = Vec::with_capacity(2 * crate::tar::BLOCK);
    let view = &bundle.index;
    let mut member = |m: LayerMember<'_>| -> Result<()> {
        let (e, key) = match m {
            LayerMember::Plain(e) => (e, None),
            LayerMember::HardLink(e, k) => (e, Some(k)),
        };
        let got = tar.next_header()?.ok_or_else(|| {
            Error::corrupt(
                what.clone(),
                format!("ends before {} (truncated or incomplete)", e.path),
            )
        })?;
        let link = match key {
            None => None,
            Some(key) => {
                if got.path != e.path
                    || got.kind != TarKind::HardLink
                    || view.hasher().path(&got.link) != key
                {
                    return Err(Error::corrupt(
                        what.clone(),
                        format!(
                            "entry {:?} is not a hard link of {} to the first path of its content",
                            got.path, e.path
                        ),
                    ));
                }
                Some(got.link.as_str())
            }
        };
        let expected = expected_header(&e, link);
        if got != expected {
            return Err(Error::corrupt(
                what.clone(),
                format!(
                    "entry {:?} does not match the index (expected {:?})",
                    got.path, expected.path
                ),
            ));
        }
        expected_raw.clear();
        crate::tar::write_header(&mut expected_raw, &expected)
            .map_err(|err| Error::corrupt("canonical tar", err.to_string()))?;
        if tar.raw_header() != expected_raw.as_slice() {
            return Err(Error::corrupt(
                what.clone(),
                format!(
                    "tar stream is not canonical: the header of {:?} has bytes the index does not \
                     imply",
                    expected.path
                ),
            ));
        }
        match (e.kind, link) {
            (KindRef::File { hash, size, .. }, None) => {
                let location = sink.location(&e);
                let mut w = HashWriter {
                    inner: sink.open_file(&e)?,
                    hasher: blake3::Hasher::new(),
                    trap,
                    location: &location,
                };
                content += tar.copy_content(&mut w)?;
                w.inner.flush().map_err(|err| Error::Io {
                    op: "write",
                    path: location.clone(),
                    source: err,
                })?;
                let found = FileHash::from(w.hasher.finalize());
                drop(w);
                if found != hash {
                    return Err(Error::FileMismatch {
                        path: e.path.to_string(),
                        expected: hash.hex(),
                        found: found.hex(),
                    });
                }
                sink.file_done(&e)?;
                progress.advance(size);
            }
            (KindRef::File { .. }, Some(canon)) => sink.hardlink(&e, canon)?,
            _ => {}
        }
        Ok(())
    };
    match lines {
        LayerLines::Index => view.for_each_in_layer(source, n as u32, &mut member)?,
        LayerLines::Buffer(b) => view.for_each_in_buffer(b, &mut member)?,
    }
    if let Some(extra) = tar.next_header()? {
        return Err(Error::corrupt(
            what,
            format!(
                "holds {:?}, which the index does not list in this layer",
                extra.path
            ),
        ));
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
    let expected_diff = bundle.meta.config.rootfs.diff_ids[n];
    if diff_id != expected_diff {
        return Err(Error::DigestMismatch {
            what: format!("layer {n} diff_id"),
            expected: expected_diff,
            found: diff_id,
        });
    }
    // The rest of the blob (layer 0's index trailer) counts toward the blob digest.
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
    Ok(content)
}

/// Run `f` over `layers` of `bundle` in parallel, each with its index lines, and return the
/// results in the order of `layers` (see the module docs for how lines are delivered).
pub(crate) fn run_layers<F>(
    source: &dyn BlobSource,
    bundle: &Bundle,
    layers: &[usize],
    f: F,
) -> Result<Vec<u64>>
where
    F: Fn(usize, &LayerLines<'_>) -> Result<u64> + Sync,
{
    let view = &bundle.index;
    let mut results: HashMap<usize, u64> = HashMap::new();
    let mut big = Vec::new();
    let mut batches: Vec<Vec<usize>> = Vec::new();
    if view.in_memory() {
        big = layers.to_vec();
    } else {
        let mut current = Vec::new();
        let mut bytes = 0u64;
        for &k in layers {
            let b = view.layer_stats(k).line_bytes + 8 * view.layer_stats(k).entries;
            if b > crate::limits::LAYER_BATCH_BYTES {
                big.push(k);
                continue;
            }
            if bytes + b > crate::limits::LAYER_BATCH_BYTES && !current.is_empty() {
                batches.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes += b;
            current.push(k);
        }
        if !current.is_empty() {
            batches.push(current);
        }
    }
    let done: Vec<(usize, u64)> = big
        .par_iter()
        .with_max_len(1)
        .map(|&k| f(k, &LayerLines::Index).map(|r| (k, r)))
        .collect::<Result<_>>()?;
    results.extend(done);
    for batch in batches {
        let bufs = view.collect_layers(source, &batch)?;
        let done: Vec<(usize, u64)> = batch
            .par_iter()
            .with_max_len(1)
            .map(|&k| {
                let b = bufs.get(&k).map(Vec::as_slice).unwrap_or_default();
                f(k, &LayerLines::Buffer(b)).map(|r| (k, r))
            })
            .collect::<Result<_>>()?;
        results.extend(done);
    }
    Ok(layers
        .iter()
        .map(|k| results.get(k).copied().unwrap_or(0))
        .collect())
}

struct HashWriter<'a> {
    inner: Box<dyn Write + 'a>,
    hasher: blake3::Hasher,
    /// Where a write error is recorded (see [`check_layer`]).
    trap: &'a IoTrap,
    location: &'a PathBuf,
}

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self
            .inner
            .write(buf)
            .map_err(|e| self.trap.record(|| IoSide::Write(self.location.clone()), e))?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
