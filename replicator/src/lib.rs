//! # sitebundle's replicator: moving bundles to every place a site is served from
//!
//! One trait, [`Target`], for "a place bundles live" (habit 3 of `STYLE.md`); push, promote,
//! rollback, status and pull are written once against it.
//!
//! ## Map
//! | concept | module | main items |
//! |---|---|---|
//! | a place bundles live | [`target`] | [`Target`], [`Capabilities`], [`read_blob_verified`], [`download_blob`] |
//! | target URLs | [`url`] | [`TargetUrl`], [`url::redact`] |
//! | opening a URL | [`open`](mod@open) | [`open()`] |
//! | backends | [`store_target`], [`oci`], [`http`] | [`store_target::StoreTarget`] (S3, GCS, Azure, directory), [`oci::OciTarget`], [`http::HttpTarget`] (read-only) |
//! | channels and history | [`channel`] | [`ChannelRecord`], [`HistoryEvent`] |
//! | push, promote, rollback | [`push`] | [`push::push`], [`push::promote`], [`push::rollback`], [`push::history`] |
//! | status | [`status`] | [`status::status`] |
//! | either digest (manifest digest or bundle id) on any target | [`resolve`] | [`resolve::resolve_digest`], [`resolve::IdRecord`], [`resolve::replaces`] |
//! | pull | [`pull`] | [`pull::pull`] |
//! | website targets: publish files into buckets, audit live origins | [`site`] | [`site::SiteUrl`], [`site::publish::publish`], [`site::audit::audit`] |
//! | registry credentials | [`auth`] | [`auth::resolve`] |
//! | the distribution API client | [`registry`] | [`registry::Registry`] |
//! | bounded reads, rates, redirects, credential scope | [`net`] | [`net::collect`], [`net::Pace`], [`net::Http`], [`net::SafeConnector`] |
//! | one HTTP client per set of settings for the process (sync: 1,000 sites, one certificate load) | [`clients`] | [`clients::enable`], [`clients::get`] |
//! | which hosts may be reached (SSRF guard), on every hop | [`allow`] | [`allow::AllowList`], [`allow::set`] |
//! | environment | [`env`](mod@env) | every `SITEBUNDLE_*` variable |
//! | CPU work boundary | [`blocking`] | [`blocking::run`] |
//! | errors | [`error`] | [`Error`] |
//!
//! The `bundle` crate stays synchronous; this crate runs I/O on tokio and sends hashing and
//! verification through [`blocking::run`].

pub mod allow;
pub mod auth;
pub mod blocking;
pub mod channel;
pub mod clients;
pub mod env;
pub mod error;
pub mod http;
pub mod net;
pub mod oci;
pub mod open;
pub mod pull;
pub mod push;
pub mod registry;
pub mod resolve;
pub mod site;
pub mod status;
pub mod store_target;
pub mod target;
pub mod url;

pub use channel::{Action, ChannelRecord, HistoryEvent};
pub use error::{Error, Result};
pub use open::open;
pub use target::{
    download_blob, read_blob_verified, BlobStream, Capabilities, ChannelMode, ChannelRead, Target,
    Validator,
};
pub use url::TargetUrl;
