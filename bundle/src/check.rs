//! Reading one layer and checking every byte of it: the core of `verify` and `extract`.
//!
//! A layer's tar stream is a function of the index (see [`crate::layout`]), so the reader does not
//! interpret the stream: it regenerates the expected header of every member and requires the
//! stream to match it exactly, in order. That rules out `..`, absolute paths, unexpected types,
//! symlink-then-write tricks and extra files by construction. File contents are read only up to
//! the size the index declares, so a decompression bomb cannot make the reader do more work than
//! the index announces. After the end-of-archive marker the stream must end; the `diff_id` and the
//! blob digest (over the whole blob, trailer included) are then compared with the config and
//! manifest.
//!
//! Matching parsed headers is not enough for canonical bytes: parsing ignores header fields it
//! does not use (uid/gid, user names, device numbers). So each header's raw bytes must equal the
//! canonical ones, and the tar reader refuses non-zero padding and anything but two zero blocks
//! at the end. Contents are the verified bytes themselves, so the stream read *is* the canonical
//! stream: one site, one byte form, one `diff_id`, with no second hash over the contents.

use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;

use crate::digest::{FileHash, HashingReader};
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::iotrap::{IoSide, IoTrap};
use crate::layout::{self, Member};
use crate::reader::{Bundle, LayerDecoder};
use crate::store::BlobSource;
use crate::tar::TarReader;

/// What to do with each member as it is read and checked.
pub(crate) trait MemberSink {
    /// Where the content of file `e` goes (`io::sink()` to only verify).
    fn open_file(&mut self, e: &Entry) -> Result<Box<dyn Write + '_>>;
    /// Called after a file's content was written and its hash checked.
    fn file_done(&mut self, _e: &Entry) -> Result<()> {
        Ok(())
    }
    /// A hardlink from `e` to the earlier `canon` (same content).
    fn hardlink(&mut self, _e: &Entry, _canon: &Entry) -> Result<()> {
        Ok(())
    }
    /// Where the content of `e` is written, for an I/O error message.
    fn location(&self, e: &Entry) -> PathBuf {
        e.path.as_str().into()
    }
}

/// A sink that only verifies.
pub(crate) struct VerifyOnly;

impl MemberSink for VerifyOnly {
    fn open_file(&mut self, _e: &Entry) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(io::sink()))
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
    sink: &mut dyn MemberSink,
    progress: &dyn crate::progress::Progress,
) -> Result<u64> {
    let trap = IoTrap::default();
    let digest = bundle.meta.manifest.layers[n].digest;
    check_layer_trapped(source, bundle, n, sink, progress, &trap)
        .map_err(|e| trap.reclassify(e, || source.location(&digest)))
}

fn check_layer_trapped(
    source: &dyn BlobSource,
    bundle: &Bundle,
    n: usize,
    sink: &mut dyn MemberSink,
    progress: &dyn crate::progress::Progress,
    trap: &IoTrap,
) -> Result<u64> {
    let desc = &bundle.meta.manifest.layers[n];
    let what = format!("layer {n} ({})", desc.digest);
    let raw = trap.reader(source.open_blob(&desc.digest)?);
    let blob = BufReader::with_capacity(256 * 1024, HashingReader::new(raw));
    let dec = LayerDecoder::new(bundle.meta.compression, blob)
        .map_err(|e| Error::corrupt(what.clone(), format!("cannot start decompression: {e}")))?;
    let mut tar = TarReader::new(HashingReader::new(dec), what.clone());
    let members = layout::members(bundle.index.entries(), n as u32);
    let mut content = 0u64;
    let mut expected_raw = Vec::with_capacity(2 * crate::tar::BLOCK);
    for m in &members {
        let expected = layout::header(m);
        expected_raw.clear();
        crate::tar::write_header(&mut expected_raw, &expected)
            .map_err(|e| Error::corrupt("canonical tar", e.to_string()))?;
        let got = tar.next_header()?.ok_or_else(|| {
            Error::corrupt(
                what.clone(),
                format!("ends before {} (truncated or incomplete)", expected.path),
            )
        })?;
        if got != expected {
            return Err(Error::corrupt(
                what.clone(),
                format!(
                    "entry {:?} does not match the index (expected {:?})",
                    got.path, expected.path
                ),
            ));
        }
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
        match m {
            Member::File(e) => {
                let location = sink.location(e);
                let mut w = HashWriter {
                    inner: sink.open_file(e)?,
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
                if Some(found) != e.hash() {
                    return Err(Error::FileMismatch {
                        path: e.path.to_string(),
                        expected: e.hash().map(|h| h.hex()).unwrap_or_default(),
                        found: found.hex(),
                    });
                }
                sink.file_done(e)?;
                progress.advance(e.size());
            }
            Member::HardLink(e, canon) => sink.hardlink(e, canon)?,
            Member::Dir(_) | Member::Symlink(_) => {}
        }
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
    io::copy(&mut (&mut blob).take(desc.size + 1), &mut io::sink())
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
