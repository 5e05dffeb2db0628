//! zstd layer blobs as runs of frames, and the frame cache that lets a rebuild recompress only
//! the members that changed.
//!
//! A zstd layer blob is a sequence of zstd frames, one per *run* of tar members (§7 of
//! `spec/format.md`): frames concatenate into one valid zstd stream, so every decoder (`zstd -d`,
//! skopeo, podman, containerd, this crate) reads the same tar stream as from one frame, and the
//! `diff_id`s and the bundle id do not depend on it. What it buys: a frame depends only on the
//! members in it, so a rebuild takes the compressed bytes of every unchanged run from the blob the
//! previous build wrote ([`FrameMap`]) and compresses only the runs whose members changed.
//!
//! Runs are cut, within one layer and in tar order, by a rule that depends on the member at the
//! boundary only (as the layer grouping does over files, see [`crate::layout`]), so a page that
//! grows or shrinks disturbs the run it is in and not the ones after it:
//! - a member whose tar bytes (header, content, padding) are [`RUN_TARGET`] or more starts a run
//!   of its own;
//! - a run is closed after a member when `h(path) mod RUN_TARGET < tar bytes of the member`
//!   (`h` as for layers: the first 8 bytes, LE, of BLAKE3(path)), or when it holds
//!   [`RUN_MAX`] tar bytes or more;
//! - the end-of-archive blocks belong to the last run.
//!
//! A cached frame is copied in one of two ways:
//! - **as it is**, at the unchanged start of a rebuilt layer: the frame table recorded, for each
//!   frame, the layer's `diff_id` sha256 state before and after it ([`Chain`], see
//!   [`crate::midstate`]) and the BLAKE3 of its compressed bytes. Where the rebuild's hash state
//!   is the recorded one before the frame, its bytes are copied without being decompressed,
//!   checked against that BLAKE3, and the hash continues from the state after it. (On a
//!   53,000-file site this halved the work of a one-page rebuild's layer: 110 ms to 60 ms.)
//! - **decompressed and checked**, everywhere else (the hash must see the bytes anyway): its tar
//!   bytes must be exactly the headers the index gives and contents whose BLAKE3 is the index's
//!   (what [`FrameCheck`] checks).
//!
//! Anything else (a frame whose bytes differ from their BLAKE3, a table line whose own check
//! fails) makes the build drop the frame cache for that layer, or for that line, and compress
//! from the site files. The tables are the store's own, like the whole-layer cache, which reuses
//! a blob by its recorded digest: a table rewritten consistently by someone who can write the
//! store is not detected here (they could rewrite its blobs too); `verify` checks every
//! `diff_id`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, FileHash};
use crate::layout::Member;
use crate::midstate::Midstate;
use crate::tar;

/// Expected tar bytes of a run of small members. Each frame starts with an empty window, so the
/// template text every page of a site repeats is paid once per frame: the medium corpus's layer
/// tars (152 MB, 5,882 files) cut into fixed chunks of 256 KiB, 1 MiB, 2 MiB and 4 MiB grew by
/// 12 %, 3.6 %, 1.5 % and 0.5 % over one frame per layer; with this rule at 1 MiB the bundle's
/// blobs are 2.3 % larger (22.0 MiB against 21.5 MiB). A rebuild recompresses about 1 MiB (a
/// few ms of one core) per changed page, at most [`RUN_MAX`].
pub const RUN_TARGET: u64 = 1024 * 1024;
/// A run is closed once it holds this many tar bytes, whatever the cut rule says.
pub const RUN_MAX: u64 = 4 * RUN_TARGET;
/// What a frame key depends on besides the members: the frame rule, the compressor and its
/// settings. A different zstd library may compress the same bytes differently, so frames it
/// cached are not reused by another version (a rebuild stays byte-identical to a cold build).
fn writer_tag() -> String {
    format!(
        "sitebundle frame 1\0zstd {} level {} checksum\0",
        zstd::zstd_safe::version_string(),
        crate::compress::ZSTD_LEVEL
    )
}

/// Tar bytes of a member: header (with any pax header) plus content and padding.
pub fn member_tar_len(m: &Member<'_>, header: &[u8]) -> u64 {
    let content = match m {
        Member::File(e) => e.size() + tar::padding(e.size()) as u64,
        _ => 0,
    };
    header.len() as u64 + content
}

/// One run of a layer: which members, how many tar bytes (end-of-archive blocks included for
/// the last run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Member indices.
    pub members: Range<usize>,
    /// Uncompressed bytes of the frame.
    pub tar_len: u64,
    /// Whether the end-of-archive blocks close this run.
    pub last: bool,
}

/// Cut a layer's members (with their header bytes) into runs (see the module docs). A layer
/// without members is one run holding the end-of-archive blocks.
pub fn runs(members: &[Member<'_>], headers: &[Vec<u8>]) -> Vec<Run> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut acc = 0u64;
    for (i, (m, h)) in members.iter().zip(headers).enumerate() {
        let len = member_tar_len(m, h);
        if len >= RUN_TARGET && i > start {
            out.push(Run {
                members: start..i,
                tar_len: acc,
                last: false,
            });
            start = i;
            acc = 0;
        }
        acc += len;
        let path = match m {
            Member::Dir(e) | Member::Symlink(e) | Member::File(e) | Member::HardLink(e, _) => {
                e.path.as_str()
            }
        };
        if acc >= RUN_MAX || crate::layout::cut_hash(path) % RUN_TARGET < len {
            out.push(Run {
                members: start..i + 1,
                tar_len: acc,
                last: false,
            });
            start = i + 1;
            acc = 0;
        }
    }
    if start < members.len() || out.is_empty() {
        out.push(Run {
            members: start..members.len(),
            tar_len: acc,
            last: true,
        });
    }
    if let Some(r) = out.last_mut() {
        r.last = true;
        r.tar_len += 2 * tar::BLOCK as u64;
    }
    out
}

/// The cache key of a frame: the writer tag, every member's header bytes and content hash, and
/// whether the end-of-archive blocks follow.
pub fn run_key(members: &[Member<'_>], headers: &[Vec<u8>], run: &Run) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(writer_tag().as_bytes());
    for i in run.members.clone() {
        h.update(&(headers[i].len() as u64).to_le_bytes());
        h.update(&headers[i]);
        if let Member::File(e) = &members[i] {
            if let Some(fh) = e.hash() {
                h.update(&fh.0);
            }
        }
    }
    h.update(if run.last { b"end" } else { b"run" });
    *h.finalize().as_bytes()
}

/// Where a compressed frame is: in blob `blob`, `len` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLoc {
    /// The layer blob holding it.
    pub blob: Digest,
    /// Offset in the blob.
    pub offset: u64,
    /// Compressed length.
    pub len: u64,
    /// Its place in its layer's `diff_id` hash, when the table recorded it.
    pub chain: Option<Chain>,
}

/// A frame's place in its layer's `diff_id` hash, and what its compressed bytes hash to: a
/// rebuild whose `diff_id` hash is at `before` when it reaches this frame copies the compressed
/// bytes (checked against `sum`) and continues from `after`, without decompressing them (see
/// [`crate::midstate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The `diff_id` hash state before the frame's tar bytes.
    pub before: Midstate,
    /// The state after them.
    pub after: Midstate,
    /// BLAKE3 of the compressed frame.
    pub sum: [u8; 32],
}

/// One frame a build wrote: key and place in its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRec {
    /// [`run_key`].
    pub key: [u8; 32],
    /// Offset in the blob.
    pub offset: u64,
    /// Compressed length.
    pub len: u64,
    /// BLAKE3 of the compressed frame.
    pub sum: [u8; 32],
    /// The layer's `diff_id` hash state after the frame (`None` off a block boundary, which
    /// the writer never produces: runs are whole tar blocks).
    pub after: Option<Midstate>,
}

/// The frames of the layer blobs the previous build of a site wrote, by key. Loaded from the
/// cache: `frames/<blob hex>` lists the frames of one blob in order (`key offset len`, then
/// `sum after-state after-length check` per line, see [`table_line`]),
/// `frames-<site>.tsv` the blobs of the site's last build, and `frames-last.tsv` those of the
/// store's last build (a pipeline that builds each deploy in a fresh checkout has a new site path
/// every time; keys are by content, so any earlier frame serves). Like the rest of the build
/// cache it is an optimisation only: a missing or damaged file is a miss.
#[derive(Debug, Default)]
pub struct FrameMap {
    frames: HashMap<[u8; 32], FrameLoc>,
}

/// The blobs of the store's last zstd build, whatever the site path.
const LAST_LIST: &str = "frames-last.tsv";

fn site_list_path(dir: &Path, site: &Path) -> PathBuf {
    let key = blake3::hash(site.as_os_str().as_encoded_bytes()).to_hex();
    dir.join(format!("frames-{}.tsv", &key[..32]))
}

fn table_path(dir: &Path, blob: &Digest) -> PathBuf {
    dir.join("frames").join(blob.hex())
}

fn parse_key(s: &str) -> Option<[u8; 32]> {
    let h = blake3::Hash::from_hex(s).ok()?;
    Some(*h.as_bytes())
}

/// One line of a frame table: `key offset len` and, when the frame's end state is known,
/// `sum after-words after-length check`, where `check` is the first 16 bytes of the BLAKE3 of
/// the line before it (a damaged line is a miss, never a wrong `diff_id`).
fn table_line(f: &FrameRec) -> String {
    let head = format!(
        "{}\t{}\t{}",
        blake3::Hash::from(f.key).to_hex(),
        f.offset,
        f.len
    );
    match f.after {
        None => head,
        Some(after) => {
            let body = format!(
                "{head}\t{}\t{}\t{}",
                blake3::Hash::from(f.sum).to_hex(),
                hex::encode(after.word_bytes()),
                after.len
            );
            let check = blake3::hash(body.as_bytes());
            format!("{body}\t{}", hex::encode(&check.as_bytes()[..16]))
        }
    }
}

/// A line from [`table_line`]: key, offset, length and, if present and intact, the compressed
/// frame's BLAKE3 and the end state. `None` for a line that does not parse.
#[allow(clippy::type_complexity)]
fn parse_line(line: &str) -> Option<([u8; 32], u64, u64, Option<([u8; 32], Midstate)>)> {
    let mut f = line.split('\t');
    let key = parse_key(f.next()?)?;
    let offset = f.next()?.parse().ok()?;
    let len = f.next()?.parse().ok()?;
    let chained = (|| {
        let (sum, words, after_len, check) = (f.next()?, f.next()?, f.next()?, f.next()?);
        let body = &line[..line.len() - check.len() - 1];
        let want = blake3::hash(body.as_bytes());
        if hex::decode(check).ok()?.as_slice() != &want.as_bytes()[..16] {
            return None;
        }
        let mut w = [0u8; 32];
        hex::decode_to_slice(words, &mut w).ok()?;
        let after = Midstate::from_parts(&w, after_len.parse().ok()?)?;
        Some((parse_key(sum)?, after))
    })();
    Some((key, offset, len, chained))
}

impl FrameMap {
    /// Load the frames of the last build of `site` (empty when there is none).
    pub fn load(dir: &Path, site: &Path) -> FrameMap {
        let list = site_list_path(dir, site);
        let mut frames = HashMap::new();
        let mut blobs: Vec<Digest> = Vec::new();
        for p in [&list, &dir.join(LAST_LIST)] {
            if let Ok(text) = fs::read_to_string(p) {
                blobs.extend(text.lines().filter_map(|l| l.parse::<Digest>().ok()));
            }
        }
        blobs.sort_unstable_by(|a, b| a.bytes().cmp(b.bytes()));
        blobs.dedup();
        {
            for blob in blobs {
                let Ok(table) = fs::read_to_string(table_path(dir, &blob)) else {
                    continue;
                };
                // The first frame of a blob starts its layer's tar stream.
                let mut before = Some(Midstate::START);
                for line in table.lines() {
                    match parse_line(line) {
                        Some((key, offset, len, chained)) => {
                            let chain = match (before, chained) {
                                (Some(before), Some((sum, after))) => {
                                    Some(Chain { before, after, sum })
                                }
                                _ => None,
                            };
                            before = chained.map(|(_, after)| after);
                            frames.insert(
                                key,
                                FrameLoc {
                                    blob,
                                    offset,
                                    len,
                                    chain,
                                },
                            );
                        }
                        None => before = None,
                    }
                }
            }
        }
        FrameMap { frames }
    }

    /// Where the frame with `key` is, if a previous build wrote it.
    pub fn get(&self, key: &[u8; 32]) -> Option<FrameLoc> {
        self.frames.get(key).copied()
    }

    /// Record the frame table of one blob (best effort).
    pub fn put_table(dir: &Path, blob: &Digest, frames: &[FrameRec]) {
        let d = dir.join("frames");
        let _ = fs::create_dir_all(&d);
        let _ = crate::cache::write_replace(&table_path(dir, blob), |w| {
            for f in frames {
                writeln!(w, "{}", table_line(f))?;
            }
            Ok(())
        });
    }

    /// The number of frames in the table of `blob`, if it has one: a blob built before this
    /// cache existed has none (and is not reused), and a layer reused from the layer cache keeps
    /// its table.
    pub fn table_len(dir: &Path, blob: &Digest) -> Option<usize> {
        let t = fs::read(table_path(dir, blob)).ok()?;
        Some(t.iter().filter(|&&b| b == b'\n').count())
    }

    /// Record which blobs the build of `site` just wrote or reused (best effort).
    pub fn save_site(dir: &Path, site: &Path, blobs: &[Digest]) {
        let _ = fs::create_dir_all(dir);
        let text: String = blobs.iter().map(|b| format!("{b}\n")).collect();
        for path in [site_list_path(dir, site), dir.join(LAST_LIST)] {
            // Unchanged after a rebuild with nothing new: not written again.
            if fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
                continue;
            }
            let _ = crate::cache::write_replace(&path, |w| w.write_all(text.as_bytes()));
        }
    }
}

/// One piece of the tar bytes a run must decompress to.
enum Seg<'a> {
    /// Exactly these bytes (a header).
    Exact(&'a [u8]),
    /// `left` content bytes whose BLAKE3 must be `want`.
    Content {
        left: u64,
        hasher: Box<blake3::Hasher>,
        want: Option<FileHash>,
    },
    /// This many zero bytes (padding, end of archive).
    Zeros(usize),
}

/// Checks the decompressed bytes of a cached frame against the run they must be: headers byte
/// for byte, contents by length and BLAKE3, padding and end blocks as zeros. Every byte that
/// passes is also fed to the layer's `diff_id` hash.
pub struct FrameCheck<'a, H: Write> {
    segs: std::collections::VecDeque<Seg<'a>>,
    diff: &'a mut H,
}

fn stale(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cached frame: {why}"))
}

impl<'a, H: Write> FrameCheck<'a, H> {
    /// The check for `run` of `members`, hashing what passes into `diff`.
    pub fn new(
        members: &'a [Member<'a>],
        headers: &'a [Vec<u8>],
        run: &Run,
        diff: &'a mut H,
    ) -> Self {
        let mut segs = std::collections::VecDeque::new();
        for i in run.members.clone() {
            segs.push_back(Seg::Exact(&headers[i]));
            if let Member::File(e) = &members[i] {
                segs.push_back(Seg::Content {
                    left: e.size(),
                    hasher: Box::new(blake3::Hasher::new()),
                    want: e.hash(),
                });
                segs.push_back(Seg::Zeros(tar::padding(e.size())));
            }
        }
        if run.last {
            segs.push_back(Seg::Zeros(2 * tar::BLOCK));
        }
        FrameCheck { segs, diff }
    }

    /// After the frame: every expected byte was seen.
    pub fn finish(mut self) -> io::Result<()> {
        self.pop_done()?;
        if self.segs.is_empty() {
            Ok(())
        } else {
            Err(stale("shorter than its members"))
        }
    }

    /// Drop finished segments (checking a finished content's hash).
    fn pop_done(&mut self) -> io::Result<()> {
        loop {
            let done = match self.segs.front() {
                Some(Seg::Exact(b)) => b.is_empty(),
                Some(Seg::Zeros(n)) => *n == 0,
                Some(Seg::Content { left, .. }) => *left == 0,
                None => return Ok(()),
            };
            if !done {
                return Ok(());
            }
            if let Some(Seg::Content { hasher, want, .. }) = self.segs.pop_front() {
                if Some(FileHash::from(hasher.finalize())) != want {
                    return Err(stale("a file's content differs from the index"));
                }
            }
        }
    }
}

impl<H: Write> Write for FrameCheck<'_, H> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            self.pop_done()?;
            let Some(seg) = self.segs.front_mut() else {
                return Err(stale("longer than its members"));
            };
            let n = match seg {
                Seg::Exact(b) => {
                    let n = b.len().min(rest.len());
                    if b[..n] != rest[..n] {
                        return Err(stale("a header differs from the index"));
                    }
                    *b = &b[n..];
                    n
                }
                Seg::Zeros(z) => {
                    let n = (*z).min(rest.len());
                    if rest[..n].iter().any(|&b| b != 0) {
                        return Err(stale("padding is not zero"));
                    }
                    *z -= n;
                    n
                }
                Seg::Content { left, hasher, .. } => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(rest.len());
                    hasher.update(&rest[..n]);
                    *left -= n as u64;
                    n
                }
            };
            self.diff.write_all(&rest[..n])?;
            rest = &rest[n..];
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies what it reads into `out` too; a write error is kept apart (it is the store's).
struct Tee<R, W> {
    inner: R,
    out: W,
    error: Option<io::Error>,
    copied: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.error = Some(e);
            return Err(io::Error::other("writing the blob failed"));
        }
        self.copied += n as u64;
        Ok(n)
    }
}

/// Why a cached frame was not used.
#[derive(Debug)]
pub enum CopyError {
    /// The frame is not what its key promises (or its blob is gone): compress afresh.
    Stale(String),
    /// Writing the new blob failed.
    Write(io::Error),
}

/// The `loc.len` bytes of a cached frame in its blob, refused (as stale) when the blob is gone
/// or shorter than the table says.
fn open_frame(blob_path: &Path, loc: &FrameLoc) -> Result<io::Take<File>, CopyError> {
    let st = |e: io::Error| CopyError::Stale(e.to_string());
    let mut f = File::open(blob_path).map_err(st)?;
    let size = f.metadata().map_err(st)?.len();
    if loc.offset.checked_add(loc.len).is_none_or(|end| end > size) {
        return Err(CopyError::Stale("past the end of its blob".into()));
    }
    f.seek(SeekFrom::Start(loc.offset)).map_err(st)?;
    Ok(f.take(loc.len))
}

/// Copy the compressed bytes of a cached frame into `out` as they are, checking them against
/// the BLAKE3 its table recorded (`sum`): for a frame whose place in the `diff_id` hash is known
/// ([`Chain`]), nothing needs decompressing. A mismatch is [`CopyError::Stale`]; `out` then
/// holds a partial copy, and the caller starts the layer again.
pub fn copy_raw(
    blob_path: &Path,
    loc: &FrameLoc,
    sum: &[u8; 32],
    out: &mut impl Write,
) -> Result<(), CopyError> {
    let st = |e: io::Error| CopyError::Stale(e.to_string());
    let mut f = open_frame(blob_path, loc)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = loc.len;
    while left > 0 {
        let n = f.read(&mut buf).map_err(st)?;
        if n == 0 {
            return Err(CopyError::Stale("its blob ended early".into()));
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        left -= n as u64;
    }
    if h.finalize().as_bytes() != sum {
        return Err(CopyError::Stale(
            "its compressed bytes differ from its table".into(),
        ));
    }
    Ok(())
}

/// Copy the cached frame at `loc` (a blob of `store_blobs`) into `out`, decompressing it on the
/// way and checking it with `check` (see [`FrameCheck`]).
pub fn copy_cached<H: Write>(
    blob_path: &Path,
    loc: &FrameLoc,
    out: &mut impl Write,
    check: FrameCheck<'_, H>,
) -> Result<(), CopyError> {
    let st = |e: io::Error| CopyError::Stale(e.to_string());
    let tee = Tee {
        inner: open_frame(blob_path, loc)?,
        out,
        error: None,
        copied: 0,
    };
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(64 * 1024, tee))
            .map_err(st)?
            .single_frame();
    dec.window_log_max(crate::limits::ZSTD_WINDOW_LOG_MAX)
        .map_err(st)?;
    let mut check = check;
    let copied = io::copy(&mut dec, &mut check);
    let mut rest = dec.finish();
    if let Some(e) = rest.get_mut().error.take() {
        return Err(CopyError::Write(e));
    }
    copied.map_err(st)?;
    check.finish().map_err(st)?;
    // Nothing may follow the frame inside its recorded range.
    let extra = rest.fill_buf().map(|b| b.len()).map_err(st)?;
    if let Some(e) = rest.get_mut().error.take() {
        return Err(CopyError::Write(e));
    }
    if extra != 0 || rest.get_ref().copied != loc.len {
        return Err(CopyError::Stale(
            "the recorded length is not one frame".into(),
        ));
    }
    Ok(())
}
