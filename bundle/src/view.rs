//! A bundle's index as a reader holds it: checked against every rule of spec §4 and §6 while
//! streamed, in memory bounded by [`crate::limits`] whatever the index declares.
//!
//! An index can be 256 MiB and two million entries (a site of a million files is about 130 MB),
//! so a reader cannot keep it as strings, let alone as `Entry` values (a 1.5 MB layer 0 declaring
//! 4M entries used to cost 900 MB). [`IndexView`] keeps:
//! - the index bytes themselves when they are at most [`IN_MEMORY_INDEX_BYTES`], else only where
//!   to find them (layer 0's trailer, or the spill file of a rebuilt index): each pass over the
//!   index decompresses it again, and its sha256 is checked again at the end of each pass (the
//!   bytes on disk may have changed since the first);
//! - its counts ([`IndexStats`]), per layer too;
//! - one bit per entry: whether a file is the *canonical* path of its content (stored as a
//!   regular file; other paths are hard links to it);
//! - for each hard link, the keyed hash ([`crate::pathkey`]) of the path it must link to.
//!
//! Opening checks, in as few passes as the limits allow (one for most bundles):
//! 1. every line in canonical form, sorted, parents listed, layers by type, the limits, and the
//!    counts against the config's labels ([`crate::index::Structure`]);
//! 2. which paths are canonical, and that every path of a content is in one layer: a table of the
//!    distinct contents seen, split by a keyed hash into as many passes as
//!    [`CONTENT_PASS_BYTES`] requires;
//! 3. the layer grouping of §6 ([`crate::layout::GroupingCheck`]);
//! 4. when the index has symlinks, one more pass builds a table of the keyed hashes of all paths
//!    (16 bytes an entry) and every link is resolved through it ([`crate::links`]).
//!
//! Then [`IndexView::for_each`] and [`IndexView::for_each_in_layer`] stream the entries again for
//! `ls`, `extract` and the layer checks.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, Read};
use std::sync::Arc;

use sha2::Digest as _;

use crate::compress::{Compression, IndexFrameReader};
use crate::digest::{Digest, FileHash};
use crate::error::{Error, Result};
use crate::index::{
    parse_line, EntryRef, Index, IndexStats, KindRef, LayerStats, Structure, TableRec,
    INDEX_HEADER, TABLE_DIR, TABLE_FILE, TABLE_LINK,
};
use crate::layout::GroupingCheck;
use crate::limits::{CONTENT_PASS_BYTES, IN_MEMORY_INDEX_BYTES, MAX_INDEX_BYTES};
use crate::links::{Node, Resolver, Tree};
use crate::manifest::Labels;
use crate::pathkey::{PathHasher, PathKey};
use crate::store::BlobSource;

const WHAT: &str = "bundle index";

/// Where the index bytes are.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// In memory (at most [`IN_MEMORY_INDEX_BYTES`]), already checked against its digest.
    Memory(Arc<Vec<u8>>),
    /// In layer 0's trailer: the index frame (zstd) or members (gzip) at `offset..offset+len`.
    Trailer {
        layer0: Digest,
        compression: Compression,
        offset: u64,
        len: u64,
    },
    /// Rebuilt from the layers into an unnamed temporary file of `len` bytes.
    Spill { file: Arc<File>, len: u64 },
}

/// Reads `len` bytes of a shared file from `pos`, with positioned reads (so several passes can
/// read one file at once).
pub(crate) struct PosReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for PosReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl PosReader {
    pub(crate) fn new(file: Arc<File>, pos: u64, len: u64) -> PosReader {
        PosReader {
            file,
            pos,
            end: pos.saturating_add(len),
        }
    }
}

/// A read error while streaming the index: decoding errors mean the bytes are bad; anything else
/// is the local disk.
fn read_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof | io::ErrorKind::Other => {
            Error::corrupt(WHAT, format!("cannot read it: {e}"))
        }
        _ => Error::Io {
            op: "read the bundle index from",
            path: "the store".into(),
            source: e,
        },
    }
}

impl Source {
    /// A reader over the raw index bytes.
    fn open<'a>(&'a self, blobs: &'a dyn BlobSource) -> Result<Box<dyn BufRead + Send + 'a>> {
        Ok(match self {
            Source::Memory(b) => Box::new(&b[..]),
            Source::Trailer {
                layer0,
                compression,
                offset,
                len,
            } => {
                let mut r = blobs.open_blob(layer0)?;
                let skipped =
                    io::copy(&mut (&mut r).take(*offset), &mut io::sink()).map_err(read_error)?;
                if skipped != *offset {
                    return Err(Error::corrupt(
                        "layer 0",
                        "shorter than its index footer says",
                    ));
                }
                Box::new(io::BufReader::with_capacity(
                    256 * 1024,
                    IndexFrameReader::new(*compression, r.take(*len), *len)?,
                ))
            }
            Source::Spill { file, len } => Box::new(io::BufReader::with_capacity(
                256 * 1024,
                PosReader::new(file.clone(), 0, *len),
            )),
        })
    }

    fn verified(&self) -> bool {
        matches!(self, Source::Memory(_))
    }
}

/// Lines of an index stream, at most [`crate::limits::MAX_LINE_BYTES`] each, hashed and counted
/// as they are read.
struct Lines<R> {
    inner: R,
    hasher: sha2::Sha256,
    total: u64,
    /// When set, a copy of the bytes read, until it would exceed [`IN_MEMORY_INDEX_BYTES`].
    keep: Option<Vec<u8>>,
}

impl<R: BufRead> Lines<R> {
    fn new(inner: R, keep: bool) -> Self {
        Lines {
            inner,
            hasher: sha2::Sha256::new(),
            total: 0,
            keep: keep.then(Vec::new),
        }
    }

    /// The next line (with its `\n`) into `buf`; `false` at the end of the stream.
    fn next(&mut self, buf: &mut Vec<u8>) -> Result<bool> {
        buf.clear();
        loop {
            let chunk = self.inner.fill_buf().map_err(read_error)?;
            if chunk.is_empty() {
                if buf.is_empty() {
                    return Ok(false);
                }
                return Err(Error::corrupt(WHAT, "last line is not terminated"));
            }
            let (take, done) = match memchr(b'\n', chunk) {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            if buf.len() + take > crate::limits::MAX_LINE_BYTES + 1 {
                return Err(Error::corrupt(
                    WHAT,
                    "a line is longer than any valid line (16 KiB)",
                ));
            }
            buf.extend_from_slice(&chunk[..take]);
            self.inner.consume(take);
            if done {
                break;
            }
        }
        self.total += buf.len() as u64;
        if self.total > MAX_INDEX_BYTES {
            return Err(Error::corrupt(
                WHAT,
                format!("larger than {MAX_INDEX_BYTES} bytes, the most the format allows"),
            ));
        }
        self.hasher.update(&buf[..]);
        if let Some(k) = &mut self.keep {
            if (k.len() + buf.len()) as u64 <= IN_MEMORY_INDEX_BYTES {
                k.extend_from_slice(buf);
            } else {
                self.keep = None;
            }
        }
        Ok(true)
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

/// Run `f` over every entry of `source` in order, with its ordinal and line length. Checks the
/// header line, and (unless the bytes are in memory and were checked already) that the bytes
/// hash to `digest`. The first rule an entry breaks ends the pass at once (a bomb is refused at
/// the first line past a limit, not after reading the rest to hash it). Returns the bytes when
/// `keep` and they fit in memory.
fn scan(
    source: &Source,
    blobs: &dyn BlobSource,
    digest: &Digest,
    keep: bool,
    f: impl FnMut(u64, &EntryRef<'_>, usize) -> std::result::Result<(), String>,
) -> Result<Option<Vec<u8>>> {
    scan_layer(source, blobs, digest, keep, None, f)
}

/// [`scan`], giving `f` only the entries of `layer` when set. Later passes skip the other lines
/// by their LAYER field without parsing them: the first pass checked every line, and the bytes
/// are the same (in memory, or hashed again to the end of this pass).
fn scan_layer(
    source: &Source,
    blobs: &dyn BlobSource,
    digest: &Digest,
    keep: bool,
    layer: Option<u32>,
    mut f: impl FnMut(u64, &EntryRef<'_>, usize) -> std::result::Result<(), String>,
) -> Result<Option<Vec<u8>>> {
    let mut lines = Lines::new(source.open(blobs)?, keep);
    let mut buf = Vec::with_capacity(256);
    let header_ok = lines.next(&mut buf)? && buf == format!("{INDEX_HEADER}\n").as_bytes();
    if !header_ok {
        return Err(Error::corrupt(
            WHAT,
            format!("does not start with {INDEX_HEADER:?}"),
        ));
    }
    let mut ordinal = 0u64;
    let mut failure = None;
    while lines.next(&mut buf)? {
        if let Some(k) = layer {
            if layer_field(&buf) != Some(k as usize) {
                ordinal += 1;
                continue;
            }
        }
        let r = parse_line(&buf).and_then(|e| f(ordinal, &e, buf.len()));
        if let Err(reason) = r {
            failure = Some(format!("line {}: {reason}", ordinal + 2));
            break;
        }
        ordinal += 1;
    }
    if let Some(reason) = failure {
        return Err(Error::corrupt(WHAT, reason));
    }
    if !source.verified() {
        let found = Digest::from_bytes(lines.hasher.finalize().into());
        if found != *digest {
            return Err(Error::DigestMismatch {
                what: "index".into(),
                expected: *digest,
                found,
            });
        }
    }
    Ok(lines.keep)
}

/// The links of an index while they are checked: targets in one arena, and, once the path table
/// is built, each link's position in it.
#[derive(Default)]
struct Links {
    arena: String,
    /// (ordinal of the link's line, start of its target in `arena`, target length).
    links: Vec<(u32, u32, u16)>,
    /// Position of each link in the sorted table.
    pos: Vec<u32>,
}

/// The table of every path's keyed hash, sorted, with each entry's parent position.
struct PathTable<'a> {
    hasher: &'a PathHasher,
    recs: Vec<TableRec>,
    links: &'a Links,
}

const ROOT: u32 = u32::MAX;

impl PathTable<'_> {
    fn key(&self, p: u32) -> PathKey {
        if p == ROOT {
            PathKey::ROOT
        } else {
            self.recs[p as usize].key
        }
    }
}

impl Tree for PathTable<'_> {
    type Pos = u32;

    fn root(&self) -> u32 {
        ROOT
    }

    fn parent(&self, p: u32) -> u32 {
        self.recs[p as usize].parent.0[0]
    }

    fn child(&self, p: u32, name: &str) -> Option<Node<u32>> {
        let key = self.hasher.child(self.key(p), name.as_bytes());
        let i = self.recs.binary_search_by(|r| r.key.cmp(&key)).ok()? as u32;
        let info = self.recs[i as usize].info;
        Some(match info & 3 {
            TABLE_DIR => Node::Dir(i),
            TABLE_FILE => Node::File(i),
            _ => Node::Link(info >> 2),
        })
    }

    fn link_count(&self) -> usize {
        self.links.links.len()
    }

    fn link_target(&self, id: u32) -> &str {
        let (_, off, len) = self.links.links[id as usize];
        &self.links.arena[off as usize..off as usize + len as usize]
    }

    fn link_dir(&self, id: u32) -> u32 {
        self.parent(self.links.pos[id as usize])
    }
}

/// Sort the table by key and turn parent keys into parent positions. `None` when two entries
/// have the same key (a collision of the keyed hash: the caller starts again with a new key).
fn finish_table(mut recs: Vec<TableRec>, links: &mut Links) -> Option<Vec<TableRec>> {
    recs.sort_unstable_by_key(|r| r.key);
    if recs.windows(2).any(|w| w[0].key == w[1].key) {
        return None;
    }
    for i in 0..recs.len() {
        let parent = recs[i].parent;
        let pos = if parent == PathKey::ROOT {
            ROOT
        } else {
            // The parent is a directory of the index (checked by `Structure`), so it is there.
            recs.binary_search_by(|r| r.key.cmp(&parent)).ok()? as u32
        };
        recs[i].parent = PathKey([pos, 0, 0]);
        if recs[i].info & 3 == TABLE_LINK {
            let id = (recs[i].info >> 2) as usize;
            links.pos[id] = i as u32;
        }
    }
    Some(recs)
}

/// Distinct contents of one content pass: (hash, executable) to the first path's ordinal,
/// layer and key.
type ContentTable = HashMap<(FileHash, bool), (u32, u32, PathKey)>;

/// Bytes one [`ContentTable`] entry costs, with the hash table's overhead.
const CONTENT_ENTRY_BYTES: u64 = 96;

/// A bundle's checked index (see the module docs).
#[derive(Debug, Clone)]
pub struct IndexView {
    source: Source,
    digest: Digest,
    stats: IndexStats,
    /// One bit per entry: set for a file stored as a regular file (the first path of its content).
    canonical: Vec<u64>,
    /// (ordinal, key of the canonical path) of every other path of a content, by ordinal.
    hardlinks: Vec<(u32, PathKey)>,
    hasher: PathHasher,
    /// When the index is in memory: for each layer, (offset of the line, ordinal) of its
    /// entries, so a layer's check reads its own lines only (8 bytes an entry).
    by_layer: Vec<Vec<(u32, u32)>>,
}

/// One member of a layer, as [`IndexView::for_each_in_layer`] gives it.
#[derive(Debug, Clone, Copy)]
pub enum LayerMember<'a> {
    /// A directory or symlink (layer 0), or a file stored as a regular file.
    Plain(EntryRef<'a>),
    /// A file stored as a hard link; the key is that of the path it must link to.
    HardLink(EntryRef<'a>, PathKey),
}

impl IndexView {
    /// Check the index at `source` against every rule of spec §4 and §6 for a bundle of `layers`
    /// layers whose config declares `labels`.
    pub(crate) fn open(
        source: Source,
        blobs: &dyn BlobSource,
        layers: u32,
        labels: &Labels,
    ) -> Result<IndexView> {
        let digest = labels.index;
        let files_declared = labels.files;
        let per_pass = (CONTENT_PASS_BYTES as u64 / CONTENT_ENTRY_BYTES).max(1);
        let passes = files_declared.div_ceil(per_pass).max(1);
        let hasher = PathHasher::new();
        let partition =
            |h: &FileHash| -> u64 { u64::from(hasher.child(PathKey::ROOT, &h.0).0[0]) % passes };
        let mut canonical: Vec<u64> = Vec::new();
        let mut hardlinks: Vec<(u32, PathKey)> = Vec::new();
        let mut grouping = GroupingCheck::default();
        let mut links = Links::default();
        let mut source = source;
        let mut stats = IndexStats::default();
        for pass in 0..passes {
            let mut structure = (pass == 0).then(|| Structure::new(Some(layers)));
            let mut table: ContentTable = HashMap::new();
            let mut files_seen = 0u64;
            let kept = scan(&source, blobs, &digest, pass == 0, |ord, e, len| {
                if let Some(s) = &mut structure {
                    s.feed(e, len)?;
                    if let KindRef::Symlink { target } = e.kind {
                        links.links.push((
                            ord as u32,
                            links.arena.len() as u32,
                            target.len() as u16,
                        ));
                        links.arena.push_str(target);
                    }
                }
                let KindRef::File {
                    hash, executable, ..
                } = e.kind
                else {
                    return Ok(());
                };
                files_seen += 1;
                if files_seen > files_declared {
                    return Err(format!(
                        "more files than the config's dev.sitebundle.files ({files_declared})"
                    ));
                }
                let ord32 = ord as u32;
                let word = (ord / 64) as usize;
                if canonical.len() <= word {
                    canonical.resize(word + 1, 0);
                }
                if partition(&hash) != pass {
                    return Ok(());
                }
                match table.entry((hash, executable)) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert((ord32, e.layer, hasher.path(e.path)));
                        canonical[word] |= 1 << (ord % 64);
                        if passes == 1 {
                            grouping.feed(e.path, e.size(), e.layer);
                        }
                    }
                    std::collections::hash_map::Entry::Occupied(o) => {
                        let &(_, layer, key) = o.get();
                        if layer != e.layer {
                            return Err(format!(
                                "{} is in layer {}, the first path of the same content in \
                                 layer {layer}: a content and all its paths are in one layer",
                                e.path, e.layer
                            ));
                        }
                        hardlinks.push((ord32, key));
                    }
                }
                Ok(())
            })?;
            if let Some(s) = structure {
                let (st, _) = s.finish().map_err(|r| Error::corrupt(WHAT, r))?;
                if st.files != labels.files || st.bytes != labels.bytes {
                    return Err(Error::corrupt(
                        "image config",
                        format!(
                            "labels say {} files of {} bytes, the index has {} files of {} bytes",
                            labels.files, labels.bytes, st.files, st.bytes
                        ),
                    ));
                }
                stats = st;
                links.pos = vec![0; links.links.len()];
            }
            if let Some(bytes) = kept {
                source = Source::Memory(Arc::new(bytes));
            }
        }
        hardlinks.sort_unstable_by_key(|&(o, _)| o);
        let by_layer = match &source {
            Source::Memory(b) => lines_by_layer(b, layers),
            _ => Vec::new(),
        };
        let view = IndexView {
            source,
            digest,
            stats,
            canonical,
            hardlinks,
            hasher,
            by_layer,
        };
        if passes > 1 {
            let mut grouping = GroupingCheck::default();
            scan(&view.source, blobs, &digest, false, |ord, e, _| {
                if view.is_canonical(ord) {
                    grouping.feed(e.path, e.size(), e.layer);
                }
                Ok(())
            })?;
            grouping
                .finish(layers)
                .map_err(|r| Error::corrupt(WHAT, r))?;
        } else {
            grouping
                .finish(layers)
                .map_err(|r| Error::corrupt(WHAT, r))?;
        }
        if !links.links.is_empty() {
            view.check_links(blobs, layers, links)?;
        }
        Ok(view)
    }

    /// Spec §4 rule 6: resolve every link through a table of all paths (keyed hashes).
    fn check_links(&self, blobs: &dyn BlobSource, layers: u32, mut links: Links) -> Result<()> {
        let mut attempt = 0;
        let (hasher, recs) = loop {
            let hasher = if attempt == 0 {
                self.hasher.clone()
            } else {
                PathHasher::new()
            };
            let mut s = Structure::new(Some(layers)).with_table(hasher.clone(), self.stats.entries);
            scan(&self.source, blobs, &self.digest, false, |_, e, len| {
                s.feed(e, len)
            })?;
            let (_, recs) = s.finish().map_err(|r| Error::corrupt(WHAT, r))?;
            if let Some(recs) = finish_table(recs.unwrap_or_default(), &mut links) {
                break (hasher, recs);
            }
            attempt += 1;
            if attempt >= 4 {
                return Err(Error::corrupt(
                    WHAT,
                    "paths collide under four random keys (report this)",
                ));
            }
        };
        let table = PathTable {
            hasher: &hasher,
            recs,
            links: &links,
        };
        let mut resolver = Resolver::new(&table);
        for id in 0..links.links.len() as u32 {
            if let Err(problem) = resolver.resolve(id) {
                let (ord, _, _) = links.links[id as usize];
                let target = table.link_target(id).to_string();
                let path = self.path_of(blobs, u64::from(ord))?;
                return Err(Error::corrupt(
                    WHAT,
                    Error::BadSymlink {
                        path,
                        target,
                        problem,
                    }
                    .to_string(),
                ));
            }
        }
        Ok(())
    }

    /// The path of the entry at `ordinal` (one more pass; used for error messages).
    fn path_of(&self, blobs: &dyn BlobSource, ordinal: u64) -> Result<String> {
        let mut path = String::new();
        scan(&self.source, blobs, &self.digest, false, |ord, e, _| {
            if ord == ordinal {
                path = e.path.to_string();
            }
            Ok(())
        })?;
        Ok(path)
    }

    /// Whether the file at `ordinal` is stored as a regular file (the first path of its content).
    pub fn is_canonical(&self, ordinal: u64) -> bool {
        self.canonical
            .get((ordinal / 64) as usize)
            .is_some_and(|w| w & (1 << (ordinal % 64)) != 0)
    }

    /// For a file stored as a hard link: the key of the path it links to.
    pub fn hardlink_key(&self, ordinal: u64) -> Option<PathKey> {
        let o = u32::try_from(ordinal).ok()?;
        self.hardlinks
            .binary_search_by_key(&o, |&(x, _)| x)
            .ok()
            .map(|i| self.hardlinks[i].1)
    }

    /// The hasher of [`IndexView::hardlink_key`]'s keys.
    pub fn hasher(&self) -> &PathHasher {
        &self.hasher
    }

    /// sha256 of the index bytes.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.stats.entries
    }

    /// True when the index lists nothing.
    pub fn is_empty(&self) -> bool {
        self.stats.entries == 0
    }

    /// Number of `f` entries.
    pub fn file_count(&self) -> usize {
        self.stats.files as usize
    }

    /// Sum of the sizes of all `f` entries.
    pub fn total_bytes(&self) -> u64 {
        self.stats.bytes
    }

    /// Counts for layer `k`.
    pub fn layer_stats(&self, k: usize) -> LayerStats {
        self.stats.layers.get(k).copied().unwrap_or_default()
    }

    /// Whether the index bytes are held in memory.
    pub(crate) fn in_memory(&self) -> bool {
        matches!(self.source, Source::Memory(_))
    }

    /// Every entry, in path order (one pass over the index).
    pub fn for_each(
        &self,
        blobs: &dyn BlobSource,
        mut f: impl FnMut(&EntryRef<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut failure = None;
        scan(&self.source, blobs, &self.digest, false, |_, e, _| {
            f(e).map_err(|err| {
                let msg = err.to_string();
                failure = Some(err);
                msg
            })
        })
        .map_err(|e| failure.take().unwrap_or(e))?;
        Ok(())
    }

    /// The members of layer `layer`, in tar order, with what the tar must say for each.
    pub fn for_each_in_layer(
        &self,
        blobs: &dyn BlobSource,
        layer: u32,
        mut f: impl FnMut(LayerMember<'_>) -> Result<()>,
    ) -> Result<()> {
        if let (Source::Memory(bytes), Some(lines)) =
            (&self.source, self.by_layer.get(layer as usize))
        {
            for &(off, ord) in lines {
                let rest = &bytes[off as usize..];
                let end = memchr(b'\n', rest).map(|i| i + 1).unwrap_or(rest.len());
                let e = parse_line(&rest[..end]).map_err(|r| Error::corrupt(WHAT, r))?;
                f(self.member(u64::from(ord), &e)?)?;
            }
            return Ok(());
        }
        let mut failure = None;
        scan_layer(
            &self.source,
            blobs,
            &self.digest,
            false,
            Some(layer),
            |ord, e, _| {
                self.member(ord, e).and_then(&mut f).map_err(|err| {
                    let msg = err.to_string();
                    failure = Some(err);
                    msg
                })
            },
        )
        .map_err(|e| failure.take().unwrap_or(e))
        .map(|_| ())
    }

    fn member<'a>(&self, ord: u64, e: &EntryRef<'a>) -> Result<LayerMember<'a>> {
        if matches!(e.kind, KindRef::File { .. }) && !self.is_canonical(ord) {
            let key = self.hardlink_key(ord).ok_or_else(|| {
                Error::corrupt(WHAT, format!("{}: no canonical path recorded", e.path))
            })?;
            return Ok(LayerMember::HardLink(*e, key));
        }
        Ok(LayerMember::Plain(*e))
    }

    /// Collect the index lines of `layers` in one pass, each prefixed with its ordinal (8 bytes,
    /// little endian), for [`IndexView::for_each_in_buffer`].
    pub(crate) fn collect_layers(
        &self,
        blobs: &dyn BlobSource,
        layers: &[usize],
    ) -> Result<HashMap<usize, Vec<u8>>> {
        let mut out: HashMap<usize, Vec<u8>> = layers.iter().map(|&k| (k, Vec::new())).collect();
        let mut buf = Vec::new();
        let mut lines = Lines::new(self.source.open(blobs)?, false);
        if !lines.next(&mut buf)? {
            return Err(Error::corrupt(WHAT, "empty"));
        }
        let mut ordinal = 0u64;
        while lines.next(&mut buf)? {
            let layer = layer_field(&buf);
            if let Some(v) = layer.and_then(|k| out.get_mut(&k)) {
                v.extend_from_slice(&ordinal.to_le_bytes());
                v.extend_from_slice(&buf);
            }
            ordinal += 1;
        }
        if !self.source.verified() {
            let found = Digest::from_bytes(lines.hasher.finalize().into());
            if found != self.digest {
                return Err(Error::DigestMismatch {
                    what: "index".into(),
                    expected: self.digest,
                    found,
                });
            }
        }
        Ok(out)
    }

    /// [`IndexView::for_each_in_layer`] over lines collected by [`IndexView::collect_layers`].
    pub(crate) fn for_each_in_buffer(
        &self,
        mut buf: &[u8],
        mut f: impl FnMut(LayerMember<'_>) -> Result<()>,
    ) -> Result<()> {
        while buf.len() >= 8 {
            let mut o = [0u8; 8];
            o.copy_from_slice(&buf[..8]);
            let ord = u64::from_le_bytes(o);
            let rest = &buf[8..];
            let end = memchr(b'\n', rest).map(|i| i + 1).unwrap_or(rest.len());
            let line = &rest[..end];
            let e = parse_line(line).map_err(|r| Error::corrupt(WHAT, r))?;
            f(self.member(ord, &e)?)?;
            buf = &rest[end..];
        }
        Ok(())
    }

    /// Every entry as an owned [`Index`] (for `diff` and tools that need random access; it costs
    /// memory in proportion to the index).
    pub fn load(&self, blobs: &dyn BlobSource) -> Result<Index> {
        let mut entries = Vec::with_capacity(self.stats.entries.min(1 << 20) as usize);
        self.for_each(blobs, |e| {
            entries.push(e.to_entry());
            Ok(())
        })?;
        Ok(Index::from_checked(entries))
    }

    /// The index bytes (as [`IndexView::load`], for tools and tests).
    pub fn bytes(&self, blobs: &dyn BlobSource) -> Result<Vec<u8>> {
        let mut r = self.source.open(blobs)?;
        let mut out = Vec::new();
        (&mut r)
            .take(MAX_INDEX_BYTES + 1)
            .read_to_end(&mut out)
            .map_err(read_error)?;
        Ok(out)
    }
}

/// The LAYER field (the fourth) of a raw line, if it is a number.
fn layer_field(line: &[u8]) -> Option<usize> {
    let mut tabs = memchr::memchr_iter(b'\t', line);
    let (_, _, start, end) = (tabs.next()?, tabs.next()?, tabs.next()?, tabs.next()?);
    let f = &line[start + 1..end];
    if f.is_empty() || f.len() > 3 || !f.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        f.iter()
            .fold(0usize, |n, &d| n * 10 + usize::from(d - b'0')),
    )
}

/// For each of `layers` layers, (offset, ordinal) of its lines in an index held in memory
/// (already checked).
fn lines_by_layer(bytes: &[u8], layers: u32) -> Vec<Vec<(u32, u32)>> {
    let mut out = vec![Vec::new(); layers as usize];
    let mut pos = memchr(b'\n', bytes).map(|i| i + 1).unwrap_or(bytes.len());
    let mut ord = 0u32;
    while pos < bytes.len() {
        let end = memchr(b'\n', &bytes[pos..])
            .map(|i| pos + i + 1)
            .unwrap_or(bytes.len());
        if let Some(v) = layer_field(&bytes[pos..end]).and_then(|k| out.get_mut(k)) {
            v.push((pos as u32, ord));
        }
        ord += 1;
        pos = end;
    }
    out
}
