//! # Test support shared by the workspace's test crates
//!
//! Used as a dev-dependency by `cli` and `tests` (never by library code). One place for the
//! helpers several test crates need, so hostile inputs are made one way everywhere.
//!
//! ## Map
//! | concept | module | main items |
//! |---|---|---|
//! | hand-made bundles: any index, any tar, every digest right | [`craft`] | [`craft::craft`], [`craft::M`], [`craft::tar`], [`craft::index_text`] |
//! | an honest bundle rewritten with one rule broken, digests recomputed | [`forge`] | [`forge::Forge`], [`forge::RULES`] |
//! | peak RSS of a child, from `wait4` | [`rss`] | [`rss::run`], [`rss::Measured`] |
//! | index bombs, link bombs, honest bundles with a large index | [`bombs`] | [`bombs::index_bomb`], [`bombs::large_index`], [`bombs::link_bomb`] |
//! | child processes: waits that end | [`proc`] | [`proc::wait_bounded`] |
#![allow(clippy::unwrap_used)]

pub mod bombs;
pub mod craft;
pub mod forge;
pub mod proc;
pub mod rss;
