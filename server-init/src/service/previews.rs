//! Previews: one folder per channel matching a site's `channels` glob.
//!
//! A config entry `[sites.shop] channels = "pr-*"` follows every channel of its origins whose
//! name matches the glob; channel `pr-123` is installed into `DEST/shop--pr-123/` like any site
//! (atomic swap, previous kept), so a pipeline can publish a preview per pull request with
//! `sitebundle push --channel pr-123` and nginx can serve `shop--pr-123` under its own name.
//!
//! ## Folder names
//! `<site>--<channel>`: site names never contain `--` nor end in `-`
//! ([`crate::sync::check_site_name`]), so a folder splits back at its first `--`. A channel is
//! used only if it is lowercase letters, digits and `._-`, starts with a letter or digit, and the
//! folder name is at most 128 characters; other matching channels are skipped and named in the
//! set's `error` (on `/status` and the page).
//!
//! ## Removal
//! The channels are listed on the entry's origins at every pass (the first origin that answers).
//! A folder `<site>--*` whose channel is no longer listed is marked gone; after `preview_grace`
//! (default 1 h) it is removed: renamed to a hidden name first (so nginx stops serving it in
//! one step), then deleted. When the listing fails nothing is marked gone (an origin outage
//! never removes previews). The time a folder was first seen gone is also written into the
//! folder itself ([`GONE_MARKER`], Unix seconds; nginx serves `current/`, not the folder), so a
//! restart of the service does not start the grace period again: a service restarted more often
//! than `preview_grace` would otherwise never remove a preview. The marker is deleted when the
//! channel comes back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use crate::error::chain;
use crate::fetch::Timeouts;
use crate::run::{open_origins, Request, Want};
use crate::sync::{self, Job, SyncConfig};

use super::State;

/// What a listing found for one preview set.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The glob.
    pub pattern: String,
    /// Channels matched and usable as folders (`None`: the listing failed).
    pub channels: Option<Vec<String>>,
    /// Why the listing failed, or which channels were skipped.
    pub error: Option<String>,
}

/// List the channels of every preview set and make a job per matching channel.
pub async fn expand(
    config: &SyncConfig,
    root: &Path,
    timeouts: Timeouts,
) -> (Vec<Job>, BTreeMap<String, Listed>) {
    let mut jobs = Vec::new();
    let mut sets = BTreeMap::new();
    for (site, s) in &config.sites {
        let Some(pattern) = &s.channels else { continue };
        let listed = list(config, site, pattern, timeouts).await;
        if let Some(chs) = &listed.channels {
            for c in chs {
                let Some(folder) = sync::preview_folder(site, c) else {
                    continue;
                };
                let origins = config.origins_of(site, Some(c));
                let request = sync::check_allowed(&origins)
                    .map(|()| Request {
                        want: Want::Channel(c.clone()),
                        origins,
                        dest: root.join(&folder),
                        timeouts,
                        // A preview keeps what its site entry keeps.
                        keep: s
                            .keep
                            .unwrap_or(crate::install::DEFAULT_KEEP)
                            .clamp(1, crate::install::MAX_KEEP),
                    })
                    .map_err(|e| chain(&e));
                jobs.push(Job {
                    name: folder,
                    channel: Some(c.clone()),
                    preview_of: Some(site.clone()),
                    request,
                });
            }
        }
        sets.insert(site.clone(), listed);
    }
    (jobs, sets)
}

async fn list(config: &SyncConfig, site: &str, pattern: &str, timeouts: Timeouts) -> Listed {
    let failed = |e: String| Listed {
        pattern: pattern.to_string(),
        channels: None,
        error: Some(e),
    };
    // `{channel}` in an origin cannot be listed: the channels live at the origin itself.
    let origins = config.origins_of(site, None);
    if origins.iter().any(|o| o.contains("{channel}")) {
        return failed("origins of a preview set cannot contain {channel}".into());
    }
    if let Err(e) = sync::check_allowed(&origins) {
        return failed(chain(&e));
    }
    let opened = match open_origins(&origins) {
        Ok(o) => o,
        Err(e) => return failed(chain(&e)),
    };
    let mut errors = Vec::new();
    for o in &opened {
        match tokio::time::timeout(timeouts.total, o.target.list_channels()).await {
            Ok(Ok(all)) => {
                let mut channels = Vec::new();
                let mut skipped = Vec::new();
                for c in all.into_iter().filter(|c| sync::glob_match(pattern, c)) {
                    if sync::preview_folder(site, &c).is_some() {
                        channels.push(c);
                    } else {
                        skipped.push(c);
                    }
                }
                channels.sort();
                channels.dedup();
                return Listed {
                    pattern: pattern.to_string(),
                    channels: Some(channels),
                    error: (!skipped.is_empty()).then(|| {
                        format!(
                            "channels skipped (not usable in a folder name: lowercase letters, \
                             digits, ._- only): {}",
                            skipped.join(", ")
                        )
                    }),
                };
            }
            Ok(Err(e)) => errors.push(format!("{}: {}", o.name, chain(&e))),
            Err(_) => errors.push(format!("{}: listing channels timed out", o.name)),
        }
    }
    failed(format!("cannot list channels: {}", errors.join("; ")))
}

/// Folders under `root` that belong to the preview set `site`.
fn folders_of(root: &Path, site: &str) -> BTreeSet<String> {
    let prefix = format!("{site}--");
    let Ok(rd) = std::fs::read_dir(root) else {
        return BTreeSet::new();
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .filter(|n| n.starts_with(&prefix) && sync::preview_parent(n) == Some(site))
        .collect()
}

/// The file in a preview folder that says since when (Unix seconds) its channel is gone.
pub const GONE_MARKER: &str = ".sitebundle-gone-since";

/// Since when `folder` is gone: from its marker when an earlier run wrote one (a time in the
/// future, from a clock that moved back, counts as now), else now, and the marker is written
/// (best effort: a folder that cannot hold it is only kept longer).
fn gone_since(root: &Path, folder: &str, now: Instant) -> Instant {
    let marker = root.join(folder).join(GONE_MARKER);
    let unix = super::unix_now();
    // A number of at most 20 digits; anything else there (larger, a link, a fifo) is no marker.
    let read = match replicator::net::read_local_capped(&marker, 32) {
        Ok(replicator::net::LocalFile::Bytes(b)) => std::str::from_utf8(&b)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok()),
        _ => None,
    };
    match read {
        Some(t) => now
            .checked_sub(std::time::Duration::from_secs(unix.saturating_sub(t)))
            .unwrap_or(now),
        None => {
            // Whatever was there goes first: never written through a link.
            let _ = std::fs::remove_file(&marker);
            if let Err(e) = std::fs::write(&marker, format!("{unix}\n")) {
                tracing::warn!(site = %folder, error = %e, "cannot record when the preview's channel went; a restart starts its grace again");
            }
            now
        }
    }
}

/// After a pass: record the listings, mark folders whose channel is gone, and remove those
/// gone for longer than the grace period.
pub fn update(
    st: &mut State,
    sets: BTreeMap<String, Listed>,
    config: &SyncConfig,
    root: &Path,
    now: Instant,
) {
    let grace = config.preview_grace();
    st.previews.retain(|k, _| sets.contains_key(k));
    for (site, listed) in sets {
        let set = st.previews.entry(site.clone()).or_default();
        set.pattern = listed.pattern;
        set.error = listed.error;
        let Some(channels) = listed.channels else {
            continue;
        };
        let live: BTreeSet<String> = channels
            .iter()
            .filter_map(|c| sync::preview_folder(&site, c))
            .collect();
        set.channels = channels;
        let on_disk = folders_of(root, &site);
        set.gone_since
            .retain(|f, _| on_disk.contains(f) && !live.contains(f));
        // A channel that came back: its folder is live again, its marker goes.
        for f in on_disk.iter().filter(|f| live.contains(*f)) {
            let _ = std::fs::remove_file(root.join(f).join(GONE_MARKER));
        }
        for f in on_disk.iter().filter(|f| !live.contains(*f)) {
            let since = *set
                .gone_since
                .entry(f.clone())
                .or_insert_with(|| gone_since(root, f, now));
            if now.duration_since(since) >= grace {
                match remove(root, f) {
                    Ok(()) => {
                        tracing::info!(site = %f, "preview removed: its channel is gone");
                        set.gone_since.remove(f);
                        st.sites.remove(f);
                    }
                    Err(e) => {
                        tracing::error!(site = %f, error = %e, "cannot remove preview");
                        set.error = Some(format!("cannot remove {f}: {e}"));
                    }
                }
            }
        }
        set.pending_removal = set
            .gone_since
            .iter()
            .map(|(f, since)| {
                let secs = now.duration_since(*since).as_secs();
                (
                    f.clone(),
                    replicator::channel::rfc3339(super::unix_now().saturating_sub(secs)),
                )
            })
            .collect();
    }
}

/// Remove a preview folder: rename it to a hidden name (gone for nginx at once), then delete.
fn remove(root: &Path, folder: &str) -> std::io::Result<()> {
    let from = root.join(folder);
    let hidden = root.join(format!(".removing-{folder}-{}", std::process::id()));
    std::fs::rename(&from, &hidden)?;
    std::fs::remove_dir_all(&hidden)
}
