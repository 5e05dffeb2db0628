//! Every size a reader accepts, in one place (`spec/format.md` §9 "Limits").
//!
//! A bundle names its own sizes (the index declares entries, the config declares file counts and
//! bytes), and none of that is trusted: a 1.5 MB layer 0 can declare millions of entries. So each
//! limit is checked *while* the data is read, before anything proportional to it is allocated,
//! and the memory a reader keeps is bounded by these numbers whatever the input says. The limits
//! are chosen so that an honest site of a million files fits with room to spare, and so that
//! `verify` and `sitebundle-init` stay within 128 MiB of RSS on any input within them (measured in
//! `cli/tests/issue_8_index_bomb.rs` and `tests/tests/peers.rs`).
//!
//! Measured on the large corpus (53,584 files, 1,352 directories, 1.1 GB): the index is 6.96 MB
//! (126.7 bytes a line on average, paths 48.5 bytes), 2.45 MB compressed. A site of a million
//! files at that density has a 127 MB index; one of a million pages each in its own directory
//! (`slug/index.html`) has two million entries and about 170 MB.

/// Most entries (lines after the header) an index may have: a million pages each in its own
/// directory fits.
pub const MAX_ENTRIES: u64 = 1 << 21;
/// Most bytes of an uncompressed index (a million-file site needs about 130 MB).
pub const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes of the compressed index in layer 0's trailer (the index frame or members).
pub const MAX_INDEX_FRAME_BYTES: u64 = 256 * 1024 * 1024;
/// Most bytes of one index line (the longest legal one: a symlink with a 4096-byte path and a
/// 4096-byte target is under 8.3 KiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Most symlinks a bundle may have. Their targets are kept in memory while links are resolved.
pub const MAX_LINKS: u64 = 1 << 18;
/// Most bytes of all symlink targets together.
pub const MAX_LINK_TARGET_BYTES: u64 = 16 * 1024 * 1024;
/// Longest symlink target (Linux `PATH_MAX`: `symlink(2)` refuses longer ones).
pub const MAX_LINK_TARGET: usize = 4096;
/// Largest manifest or config (registries commonly cap manifests at 4 MiB).
pub const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;
/// Largest `index.json` of an OCI layout a reader loads (local store, oci-archive, targets).
pub const MAX_LAYOUT_INDEX_BYTES: u64 = 4 * 1024 * 1024;
/// Largest zstd window a reader allocates (`windowLog` 23, 8 MiB): what `zstd -19`, the Go
/// `klauspost/compress` encoder used by podman, skopeo and containerd, and sitebundle (level 3,
/// 2 MiB) stay within. A frame asking for more is refused instead of costing up to 2 GiB.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// An index of at most this many bytes is kept in memory while a bundle is read; a larger one
/// is decompressed again from layer 0 for each pass over it (the compressed bytes stay on disk).
pub const IN_MEMORY_INDEX_BYTES: u64 = 32 * 1024 * 1024;
/// Memory for the table of distinct contents built while checking the layer grouping (spec §6);
/// an index with more contents is read in several passes, each covering part of them.
pub const CONTENT_PASS_BYTES: usize = 16 * 1024 * 1024;
/// Memory for the index lines of the layers checked together when the index is not kept in
/// memory: one pass over the index collects the lines of as many layers as fit.
pub const LAYER_BATCH_BYTES: u64 = 32 * 1024 * 1024;
