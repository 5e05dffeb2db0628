//! # sitebundle's bundle format
//!
//! A *bundle* is a static site (`_site/`) packed as an image-shaped OCI artifact: an OCI image
//! manifest, an image config, and tar layers compressed with zstd (or gzip). Its identity, the
//! **bundle id**, is the digest of the config, which covers the `diff_id` (sha256 of the
//! uncompressed, canonical tar) of every layer and the sha256 of the per-file index. So the same
//! site gives the same id on any machine, whatever the zstd version. The full format is in
//! `spec/format.md`, with test vectors in `spec/test-vectors/`.
//!
//! ## Map
//! | concept | module | main items |
//! |---|---|---|
//! | digests | [`digest`] | [`Digest`] (sha256, OCI form), [`FileHash`] (BLAKE3) |
//! | paths inside a site | [`path`] | [`SitePath`] |
//! | per-file index | [`index`] | [`Index`], [`Entry`], [`index::EntryRef`], [`index::parse_line`] |
//! | a reader's checked, streamed index | [`view`] | [`view::IndexView`] |
//! | reader limits (sizes, counts) | [`limits`] | [`limits::MAX_ENTRIES`], [`limits::MAX_INDEX_BYTES`] |
//! | keyed path hashes | [`pathkey`] | [`pathkey::PathKey`], [`pathkey::PathHasher`] |
//! | symlinks resolved through the bundle | [`links`] | [`links::Resolver`], [`links::Tree`], [`links::check_links`] |
//! | canonical tar | [`tar`] | [`tar::write_header`], [`tar::TarReader`] |
//! | layer grouping | [`layout`] | [`layout::assign_layers`] |
//! | compression + index trailer | [`compress`] | [`Compression`], [`compress::LayerEncoding`] |
//! | zstd layers as runs of frames, frame cache (rebuilds in proportion to the change) | [`frames`] | [`frames::runs`], [`frames::FrameMap`] |
//! | a sha256 resumed from a saved state (a rebuild hashes a layer from its first change) | [`midstate`] | [`midstate::Sha256Resumable`], [`midstate::Midstate`] |
//! | index rebuilt from re-compressed layers | `rebuild` | (used by [`Bundle::open`]) |
//! | OCI manifest/config | [`manifest`] | [`Manifest`], [`ImageConfig`] |
//! | walking a site | [`walk`] | [`walk::walk`], [`WalkOptions`] |
//! | building | [`build`](mod@build) | [`build()`], [`BuildOptions`], [`BuildReport`] |
//! | local store | [`store`] | [`Store`] (an OCI image layout), [`BlobSource`] |
//! | opening | [`reader`] | [`Bundle`] |
//! | verify / extract / diff | [`verify`](mod@verify), [`extract`](mod@extract), [`diff`](mod@diff) | [`verify()`], [`extract()`], [`diff()`] |
//! | extract reusing an installed tree's checked files (next deploys) | [`reuse`] | [`reuse::plan`], [`reuse::extract_reusing`] |
//! | oci-archive | [`archive`] | [`archive::export`], [`archive::import`] |
//! | chosen contents out of the layers, checked (for publishing) | [`spool`] | [`spool::spool`] |
//! | progress | [`progress`] | [`Progress`] |
//! | paths past `PATH_MAX` | `dirfd` (private) | `*at()` calls relative to directory handles |
//! | local I/O vs corrupt data | `iotrap` (private) | an I/O error under a format reader stays an I/O error |
//!
//! This crate is synchronous and uses rayon for CPU work; it has no network code. The
//! `replicator` crate moves bundles between places and calls into it.

pub mod archive;
pub mod build;
pub mod cache;
mod check;
pub mod compress;
pub mod diff;
pub mod digest;
mod dirfd;
pub mod error;
pub mod extract;
pub mod frames;
pub mod index;
mod iotrap;
pub mod layout;
pub mod limits;
pub mod links;
pub mod manifest;
pub mod midstate;
pub mod path;
pub mod pathkey;
pub mod progress;
pub mod reader;
mod rebuild;
pub mod reuse;
pub mod spool;
pub mod store;
pub mod tar;
pub mod verify;
pub mod view;
pub mod walk;

pub use build::{build, BuildOptions, BuildReport};
pub use compress::Compression;
pub use diff::{diff, Diff};
pub use digest::{Digest, FileHash};
pub use error::{Error, Result};
pub use extract::{extract, ExtractOptions, ExtractReport};
pub use index::{Entry, EntryKind, Index};
pub use manifest::{ImageConfig, Manifest};
pub use path::SitePath;
pub use progress::{NoProgress, Progress};
pub use reader::Bundle;
pub use store::{BlobSource, Store};
pub use verify::{verify, VerifyReport};
pub use walk::WalkOptions;
