//! # sitebundle-init
//!
//! The library behind the `sitebundle-init` binary, an initContainer that fetches a bundle by
//! digest from the first healthy origin, verifies every byte, and installs it atomically.
//!
//! ## Map
//! | concept | module | main items |
//! |---|---|---|
//! | flags and env vars | [`args`] | [`args::Args`] |
//! | errors and exit codes | [`error`] | [`InitError`], [`ExitStatus`] |
//! | DEST layout, atomic install | [`install`] | [`install::Dest`] |
//! | fetching from origins | [`fetch`] | [`fetch::fetch`] |
//! | one site: resolve, fetch, install | [`run`] | [`run::install_one`] |
//! | many sites: config, one pass | [`sync`] | [`sync::SyncConfig`], [`sync::pass`] |
//! | the sync service: triggers, reloads, signals, status | [`service`] | [`service::run`], [`service::State`] |
//! | its HTTP API, metrics, status page | [`service::http`], [`service::metrics`], [`service::page`] | [`service::http::serve`] |
//! | previews (`<site>--<channel>`) | [`service::previews`] | [`service::previews::expand`] |
//! | logs | [`logging`] | [`logging::init`], [`logging::redact`] |
//!
//! `bundle` does the verification ([`bundle::extract()`] checks every blob and every file against
//! the index); the replicator's read side ([`replicator`]) talks to the origins.

pub mod args;
pub mod error;
pub mod fetch;
pub mod install;
pub mod logging;
pub mod run;
pub mod service;
pub mod sync;

pub use error::{ExitStatus, InitError};
