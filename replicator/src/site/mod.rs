//! # Website targets: a bundle's *files* published into the buckets and directories the public
//! fetches, in step with the channels, and an audit of what live origins serve.
//!
//! A bundle target ([`crate::Target`]) holds a bundle; a website target holds the site itself,
//! one object per file, as an S3 website bucket, a GCS bucket, an Azure `$web` container or a web
//! server's root directory serve it. `sitebundle publish` writes one bundle there; a website
//! target given to `push`/`promote`/`rollback` follows the channel move in the same
//! all-or-nothing protocol ([`crate::push`]).
//!
//! ## The protocol, in short (the full text is `spec/protocol.md`, "Website targets")
//! - Each target records what it serves in a **marker**, `.well-known/sitebundle.json`
//!   ([`marker`]): the bundle serving, publishes started over it and not finished, and earlier
//!   bundles whose objects are still to be deleted. Each bundle's index is stored beside it
//!   (`.well-known/sitebundle/index/<sha256>`), so any machine can plan the next publish.
//! - The **plan** ([`plan`]) comes from the indexes alone: what each key holds now follows from
//!   the marker's publications, so a normal publish lists nothing and HEADs nothing. Without a
//!   marker (or with `--reconcile`), the plan comes from a listing and the BLAKE3 each object
//!   carries in its metadata.
//! - **Order** ([`publish`]): the marker names the new bundle as pending; added objects go up
//!   first (the *stage*, which changes nothing the site serves), then changed non-HTML objects,
//!   then changed pages, then the marker switches, then removed objects are deleted (or kept:
//!   `--keep-removed`). Interrupted anywhere, a re-run converges; another bundle published over an
//!   unfinished publish is safe, because the marker says which keys it may have touched.
//! - **Headers** ([`headers`], [`mime`]): one rule set for every store; header-only changes are
//!   metadata copies, never re-uploads.
//! - **Audit** ([`audit`], over [`fetch`]): every file fetched from a live origin and hashed.
//!
//! ## Map
//! | concept | module | main items |
//! |---|---|---|
//! | website target URLs | [`url`] | [`SiteUrl`] |
//! | Content-Type table | [`mime`] | [`mime::content_type`] |
//! | header rules | [`headers`] | [`headers::Rules`], [`headers::Headers`] |
//! | the objects a bundle publishes | [`files`] | [`files::SiteFiles`] |
//! | marker | [`marker`] | [`marker::Marker`], [`marker::Publication`] |
//! | plan | [`plan`] | [`plan::Plan`], [`plan::plan`] |
//! | stores | [`store`], [`cloud`], [`gcs`], [`dir`] | [`store::SiteStore`], [`open()`] |
//! | the website step of a channel move | [`step`] | [`step::Websites`] |
//! | publishing | [`publish`] | [`publish::prepare`], [`publish::stage`], [`publish::switch`], [`publish::publish`] |
//! | CDN invalidation paths | [`invalidate`] | [`invalidate::paths`] |
//! | audit of live origins | [`audit`], [`fetch`] | [`audit::audit`], [`fetch::Fetcher`] |

pub mod audit;
pub mod cloud;
pub mod dir;
pub mod fetch;
pub mod files;
pub mod gcs;
pub mod headers;
pub mod invalidate;
pub mod marker;
pub mod mime;
pub mod plan;
pub mod publish;
pub mod step;
pub mod store;
pub mod url;

use std::sync::Arc;

pub use store::SiteStore;
pub use url::SiteUrl;

/// Key of the marker, relative to the target's prefix.
pub const MARKER_KEY: &str = ".well-known/sitebundle.json";
/// Prefix of the objects the protocol keeps beside the marker (indexes, the directory lock).
pub const RESERVED_PREFIX: &str = ".well-known/sitebundle/";

/// Is `key` one of the protocol's own objects (never a site file)?
pub fn is_reserved(key: &str) -> bool {
    key == MARKER_KEY || key.starts_with(RESERVED_PREFIX)
}

/// Errors particular to website targets (wrapped in [`crate::Error::Site`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    /// A header rule in `sitebundle.toml` is not acceptable.
    #[error("header rule {rule:?}: {reason}")]
    BadRule {
        /// The rule's glob.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// The bundle holds a path the protocol reserves for itself.
    #[error("the bundle holds {path}, which website targets reserve for the publish marker")]
    Reserved {
        /// The path.
        path: String,
    },
    /// A path cannot be a key on this kind of store.
    #[error("{path}: cannot be published: {reason}")]
    BadKey {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The publish would delete more objects than allowed.
    #[error(
        "{target}: the publish would delete {deletes} of {total} object(s), more than \
         --max-delete allows ({limit}); nothing was changed"
    )]
    TooManyDeletes {
        /// The target.
        target: String,
        /// Deletes planned.
        deletes: usize,
        /// Objects the target served before.
        total: usize,
        /// The limit, as given.
        limit: String,
    },
    /// Someone else changed the marker between our read and our write.
    #[error("{target}: another publish changed the marker meanwhile (expected {expected})")]
    MarkerConflict {
        /// The target.
        target: String,
        /// What we expected it to say.
        expected: String,
    },
    /// The marker (or an index kept beside it) is unreadable or inconsistent.
    #[error("{target}: {what}: {reason}")]
    BadMarker {
        /// The target.
        target: String,
        /// The object.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The marker records more unfinished publishes than the protocol keeps.
    #[error("{target}: the marker records {count} unfinished publishes (at most {max})")]
    TooManyUnfinished {
        /// The target.
        target: String,
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// A website target: where its objects go, and the public URL it is served at (for `status
/// --verify` and `audit`).
#[derive(Debug, Clone)]
pub struct SiteTarget {
    /// The target URL.
    pub url: SiteUrl,
    /// Its store.
    pub store: Arc<dyn SiteStore>,
    /// Where the public fetches it (`https://www.example.com/`), if known.
    pub public_url: Option<::url::Url>,
}

impl SiteTarget {
    /// The target's name in messages (its URL).
    pub fn name(&self) -> &str {
        self.store.name()
    }
}

/// Open a website target from its URL (credentials from the environment chains, as for bundle
/// targets: see [`crate::env`]).
pub fn open(url: &SiteUrl, public_url: Option<::url::Url>) -> crate::Result<SiteTarget> {
    let store: Arc<dyn SiteStore> = match url {
        SiteUrl::S3 { .. } | SiteUrl::Azure { .. } => Arc::new(cloud::CloudSite::open(url)?),
        SiteUrl::Gcs { bucket, prefix } => Arc::new(gcs::GcsSite::open(bucket, prefix)?),
        SiteUrl::Dir { path } => Arc::new(dir::DirSite::new(path)?),
    };
    Ok(SiteTarget {
        url: url.clone(),
        store,
        public_url,
    })
}

/// A plain message as an error source (an HTTP status and a bounded excerpt of the answer, never
/// a request header).
#[derive(Debug)]
pub struct Message(pub String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}
