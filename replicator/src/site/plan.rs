//! The plan of a publish: which objects to write, to re-head, to delete and to keep, computed
//! from indexes (no I/O here).
//!
//! **What each key holds.** From the marker ([`super::marker`]), publications are replayed
//! oldest first: a complete publication (one that was served) leaves its keys holding its bytes
//! and headers, a pending or abandoned one leaves its keys *unknown* (it may or may not have
//! written them), and so does a replaced publication whose deletion has started. The serving
//! publication comes after the replaced ones, the pending ones last. Without a marker (first
//! publish, or `--reconcile`), a listing says what each key holds: the BLAKE3 a sitebundle
//! publish put in its metadata and its headers, or nothing known for a foreign object.
//!
//! **Writes.** Each object of the new bundle is left alone when its key is known to hold the same
//! bytes and headers, gets a header-only update when only the headers differ, and is uploaded
//! otherwise. A key that is unknown because an unfinished publish of the same bytes may have
//! written it is checked with one HEAD first (that is how an interrupted publish resumes without
//! sending everything again). Keys the target does not serve yet are written in the *stage*
//! (nothing served changes); keys it serves are written at the *switch*: non-HTML first, then
//! pages, so a page never goes up before the assets it names.
//!
//! **Deletes.** At the switch the replaced publication (and any abandoned one) joins the
//! marker's `removed` list, due now or later (`--keep-removed`). The keys of every due entry are
//! deleted, except those the new bundle or a kept entry still has: only keys a sitebundle publish
//! wrote, only under the prefix. `--max-delete` refuses a plan that deletes too much, before
//! anything is written.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bundle::{Digest, FileHash};
use serde::Serialize;

use super::files::SiteFiles;
use super::headers::Headers;
use super::marker::{After, Marker, Publication, Removed};
use super::store::{Features, Stored, Version};
use super::SiteError;

/// Longest key (prefix included) every supported store accepts, in bytes (S3 and GCS: 1024
/// bytes of UTF-8; Azure: 1024 characters).
pub const MAX_KEY_BYTES: usize = 1024;

/// When the objects a publish removes are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Right after the switch.
    #[default]
    No,
    /// At the next publish's switch.
    NextPublish,
    /// At the first switch at least this long after this one.
    For(Duration),
}

impl std::str::FromStr for Keep {
    type Err = String;

    /// `next` (or `next-publish`), `no`, or a duration: `90s`, `30m`, `24h`, `7d`.
    fn from_str(s: &str) -> Result<Keep, String> {
        match s {
            "no" | "none" | "0" => return Ok(Keep::No),
            "next" | "next-publish" => return Ok(Keep::NextPublish),
            _ => {}
        }
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{s:?}: expected next, no, or a duration such as 24h"))?;
        let secs = match unit {
            "s" => n,
            "m" => n.saturating_mul(60),
            "h" => n.saturating_mul(3600),
            "d" => n.saturating_mul(86_400),
            _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
        };
        Ok(Keep::For(Duration::from_secs(secs)))
    }
}

/// The `--max-delete` guard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxDelete {
    /// At most this many objects.
    Count(usize),
    /// At most this percentage of the objects the target served.
    Percent(f64),
}

impl Default for MaxDelete {
    /// Half the site: a publish that removes most of a site is more often a wrong directory
    /// than a redesign.
    fn default() -> MaxDelete {
        MaxDelete::Percent(50.0)
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxDelete {
    type Err = String;

    /// `N`, `P%`, or `all`.
    fn from_str(s: &str) -> Result<MaxDelete, String> {
        if s == "all" {
            return Ok(MaxDelete::Percent(100.0));
        }
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.parse().map_err(|_| format!("{s:?}: not a percentage"))?;
            if !(0.0..=100.0).contains(&p) {
                return Err(format!("{s:?}: a percentage is 0% to 100%"));
            }
            return Ok(MaxDelete::Percent(p));
        }
        s.parse()
            .map(MaxDelete::Count)
            .map_err(|_| format!("{s:?}: expected a number, a percentage (25%) or all"))
    }
}

impl MaxDelete {
    fn allows(&self, deletes: usize, total: usize) -> bool {
        match *self {
            MaxDelete::Count(n) => deletes <= n,
            MaxDelete::Percent(p) => (deletes as f64) <= (total as f64) * p / 100.0,
        }
    }
}

/// When a write happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the switch: a key the target does not serve.
    Stage,
    /// At the switch: a key the target serves.
    Switch,
}

/// What a write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Send the bytes.
    Upload,
    /// Change the headers only.
    SetHeaders,
}

/// One write of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Write {
    /// Key.
    pub key: String,
    /// BLAKE3 of the bytes.
    #[serde(serialize_with = "hex")]
    pub hash: FileHash,
    /// Size.
    pub size: u64,
    /// Headers to give it.
    pub headers: Headers,
    /// Upload or header change.
    pub action: Action,
    /// Stage or switch.
    pub phase: Phase,
    /// An HTML page (written after every non-HTML object of its phase).
    pub page: bool,
    /// HEAD first: an unfinished publish of the same bytes may have written it.
    pub check_first: bool,
}

/// How the plan knew what the target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// From the marker and the indexes.
    Marker,
    /// From a listing and the objects' metadata.
    Reconcile,
}

/// The plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The target.
    pub target: String,
    /// How it was computed.
    pub mode: Mode,
    /// The publication being made.
    pub publication: Publication,
    /// Writes, in the order they happen (stage, then switch; non-HTML before pages).
    pub writes: Vec<Write>,
    /// Keys deleted after the switch.
    pub deletes: Vec<String>,
    /// Keys of replaced publications kept for later (`--keep-removed`).
    pub kept: usize,
    /// Objects already right.
    pub unchanged: usize,
    /// Objects the target served before (the `--max-delete` base).
    pub served_before: usize,
    /// Indexes kept beside the marker that go with the deleted entries.
    pub delete_indexes: Vec<Digest>,
    /// The marker written at the stage (`None`: none needed, or reconcile mode).
    #[serde(skip)]
    pub stage_marker: Option<Marker>,
    /// The marker written at the switch.
    #[serde(skip)]
    pub switch_marker: Marker,
    /// The marker written once the deletes are done (`None`: same as the switch marker).
    #[serde(skip)]
    pub final_marker: Option<Marker>,
    /// The marker's version when it was read (`None`: there was none).
    #[serde(skip)]
    pub marker_version: Option<Version>,
    /// The marker already says all the switch would write (same bundle, same rules, nothing
    /// pending or removed): the switch leaves it alone.
    #[serde(skip)]
    pub marker_current: bool,
    /// Links not published in full, and similar notes.
    pub warnings: Vec<String>,
}

impl Plan {
    /// Bytes to upload.
    pub fn upload_bytes(&self) -> u64 {
        self.writes
            .iter()
            .filter(|w| w.action == Action::Upload)
            .map(|w| w.size)
            .sum()
    }

    /// Uploads planned.
    pub fn uploads(&self) -> usize {
        self.writes
            .iter()
            .filter(|w| w.action == Action::Upload)
            .count()
    }

    /// Header-only changes planned.
    pub fn header_changes(&self) -> usize {
        self.writes.len() - self.uploads()
    }

    /// Nothing to write or delete (the marker may still be rewritten).
    pub fn is_noop(&self) -> bool {
        self.writes.is_empty() && self.deletes.is_empty()
    }
}

/// What the target holds, as far as the plan knows.
pub enum Known<'a> {
    /// The marker, with the objects of every publication it names (by index digest).
    Marker {
        /// The marker.
        marker: &'a Marker,
        /// Its version.
        version: Version,
        /// Each named publication's objects, by [`files_key`].
        files: &'a HashMap<Digest, SiteFiles>,
    },
    /// A listing (every object under the prefix, with metadata), and the marker if there is one.
    Listing {
        /// Key to object.
        listed: &'a BTreeMap<String, Stored>,
        /// The marker's version, if one exists (for the final compare-and-swap).
        version: Option<Version>,
    },
}

/// Everything a plan depends on.
pub struct Input<'a> {
    /// The target (for messages).
    pub target: &'a str,
    /// Its prefix (for the key length check).
    pub prefix: &'a str,
    /// What it keeps.
    pub features: Features,
    /// The new bundle's objects.
    pub new: &'a SiteFiles,
    /// The new publication.
    pub publication: Publication,
    /// What the target holds.
    pub known: Known<'a>,
    /// When removed objects go.
    pub keep: Keep,
    /// The delete guard.
    pub max_delete: MaxDelete,
    /// Reconcile only: also delete objects no sitebundle publish wrote.
    pub delete_foreign: bool,
    /// Now, in seconds since the epoch.
    pub now: u64,
}

#[derive(Debug, Clone)]
enum KeyState {
    Known {
        hash: FileHash,
        headers: Option<Headers>,
    },
    /// May hold any of these (or something else).
    Unknown { maybe: Vec<FileHash> },
}

fn is_page(h: &Headers) -> bool {
    h.content_type.starts_with("text/html") || h.content_type.starts_with("application/xhtml")
}

fn is_due(after: &After, now: &str) -> bool {
    match after {
        After::Now | After::NextPublish => true,
        After::Time(t) => t.as_str() <= now,
    }
}

/// Some publication may have written `k` (with `h`, or with what was known before).
fn mark_unknown<'k>(state: &mut HashMap<&'k str, KeyState>, k: &'k str, h: FileHash) {
    let e = state
        .entry(k)
        .or_insert(KeyState::Unknown { maybe: Vec::new() });
    match e {
        KeyState::Unknown { maybe } => maybe.push(h),
        KeyState::Known { hash, .. } => {
            *e = KeyState::Unknown {
                maybe: vec![*hash, h],
            }
        }
    }
}

fn hex<S: serde::Serializer>(h: &FileHash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.hex())
}

/// The key of a publication's objects in [`Known::Marker`]'s map: its index and its header
/// rules (one bundle published under two rule sets gives two sets of objects).
pub fn files_key(p: &Publication) -> Digest {
    let mut b = p.index.to_string().into_bytes();
    b.extend_from_slice(&serde_json::to_vec(&p.headers).unwrap_or_default());
    Digest::of(&b)
}

fn get_files<'f>(
    files: &'f HashMap<Digest, SiteFiles>,
    target: &str,
    p: &Publication,
) -> Result<&'f SiteFiles, SiteError> {
    files
        .get(&files_key(p))
        .ok_or_else(|| missing_index(target, p))
}

fn missing_index(target: &str, p: &Publication) -> SiteError {
    SiteError::BadMarker {
        target: target.to_string(),
        what: super::marker::index_key(&p.index),
        reason: "the index of a publication the marker names was not loaded".into(),
    }
}

/// Compute the plan.
pub fn plan(input: Input<'_>) -> Result<Plan, SiteError> {
    let Input {
        target,
        prefix,
        features,
        new,
        publication,
        known,
        keep,
        max_delete,
        delete_foreign,
        now,
    } = input;
    let now_s = crate::channel::rfc3339(now);
    let key_room = MAX_KEY_BYTES.saturating_sub(if prefix.is_empty() {
        0
    } else {
        prefix.len() + 1
    });
    if let Some(k) = new.objects.keys().find(|k| k.len() > key_room) {
        return Err(SiteError::BadKey {
            path: k.clone(),
            reason: format!("longer than the {key_room} bytes a key may have under this prefix"),
        });
    }
    let mut state: HashMap<&str, KeyState> = HashMap::new();
    let mut served: BTreeSet<&str> = BTreeSet::new();
    let mode;
    let mut stage_marker = None;
    let switch_marker;
    let mut final_marker = None;
    let marker_version;
    let mut deletes: BTreeSet<String> = BTreeSet::new();
    let mut kept = 0usize;
    let mut delete_indexes = Vec::new();
    let served_before;
    let mut warnings = new.warnings.clone();
    let mut marker_current = false;
    match known {
        Known::Marker {
            marker,
            version,
            files,
        } => {
            mode = Mode::Marker;
            marker_version = Some(version);
            for r in &marker.removed {
                let f = get_files(files, target, &r.publication)?;
                for (k, o) in &f.objects {
                    if r.complete && r.after != After::Now {
                        state.insert(
                            k.as_str(),
                            KeyState::Known {
                                hash: o.hash,
                                headers: o.headers.clone(),
                            },
                        );
                    } else {
                        mark_unknown(&mut state, k.as_str(), o.hash);
                    }
                }
            }
            if let Some(s) = &marker.serving {
                for (k, o) in &get_files(files, target, s)?.objects {
                    served.insert(k.as_str());
                    state.insert(
                        k.as_str(),
                        KeyState::Known {
                            hash: o.hash,
                            headers: o.headers.clone(),
                        },
                    );
                }
            }
            for p in &marker.pending {
                for (k, o) in &get_files(files, target, p)?.objects {
                    mark_unknown(&mut state, k.as_str(), o.hash);
                }
            }
            served_before = served.len();
            // The stage marker: the new publication joins the pending list (once).
            let mut staged = marker.clone();
            staged.sitebundle_site = super::marker::MARKER_VERSION;
            let same_as_serving = marker.serving.as_ref().is_some_and(|s| {
                s.manifest == publication.manifest && s.headers == publication.headers
            });
            if !same_as_serving {
                staged
                    .pending
                    .retain(|p| p.manifest != publication.manifest);
                staged.pending.push(publication.clone());
            }
            // The switch marker: the new publication serves; everything else is removed, due
            // now or later.
            let mut removed: Vec<Removed> = marker
                .removed
                .iter()
                .filter(|r| r.publication.manifest != publication.manifest)
                .map(|r| Removed {
                    after: if is_due(&r.after, &now_s) {
                        After::Now
                    } else {
                        r.after.clone()
                    },
                    ..r.clone()
                })
                .collect();
            if let Some(s) = &marker.serving {
                if s.manifest != publication.manifest {
                    removed.push(Removed {
                        publication: s.clone(),
                        complete: true,
                        after: match keep {
                            Keep::No => After::Now,
                            Keep::NextPublish => After::NextPublish,
                            Keep::For(d) => After::Time(crate::channel::rfc3339(
                                now.saturating_add(d.as_secs()),
                            )),
                        },
                    });
                }
            }
            for p in &marker.pending {
                if p.manifest != publication.manifest {
                    removed.push(Removed {
                        publication: p.clone(),
                        complete: false,
                        after: After::Now,
                    });
                }
            }
            let new_keys: BTreeSet<&str> = new.objects.keys().map(String::as_str).collect();
            let mut keep_keys: BTreeSet<&str> = BTreeSet::new();
            for r in removed.iter().filter(|r| r.after != After::Now) {
                keep_keys.extend(
                    get_files(files, target, &r.publication)?
                        .objects
                        .keys()
                        .map(String::as_str),
                );
            }
            for r in removed.iter().filter(|r| r.after == After::Now) {
                for k in get_files(files, target, &r.publication)?.objects.keys() {
                    if !new_keys.contains(k.as_str()) && !keep_keys.contains(k.as_str()) {
                        deletes.insert(k.clone());
                    }
                }
            }
            kept = keep_keys
                .iter()
                .filter(|k| !new_keys.contains(*k) && !deletes.contains(**k))
                .count();
            let live: BTreeSet<Digest> = removed
                .iter()
                .filter(|r| r.after != After::Now)
                .map(|r| r.publication.index)
                .chain(std::iter::once(publication.index))
                .collect();
            let mut gone: Vec<Digest> = removed
                .iter()
                .filter(|r| r.after == After::Now)
                .map(|r| r.publication.index)
                .filter(|d| !live.contains(d))
                .collect();
            gone.sort();
            gone.dedup();
            delete_indexes = gone;
            let switch = Marker {
                sitebundle_site: super::marker::MARKER_VERSION,
                serving: Some(publication.clone()),
                pending: Vec::new(),
                removed: removed.clone(),
            };
            if removed.iter().any(|r| r.after == After::Now) {
                final_marker = Some(Marker {
                    removed: removed
                        .into_iter()
                        .filter(|r| r.after != After::Now)
                        .collect(),
                    ..switch.clone()
                });
            }
            marker_current =
                same_as_serving && marker.pending.is_empty() && marker.removed.is_empty();
            // Nothing to record when the marker already says it (the same bundle again).
            stage_marker = (staged != *marker).then_some(staged);
            switch_marker = switch;
        }
        Known::Listing { listed, version } => {
            mode = Mode::Reconcile;
            marker_version = version;
            for (k, s) in listed {
                if super::is_reserved(k) {
                    if k.starts_with(&format!("{}index/", super::RESERVED_PREFIX))
                        && *k != super::marker::index_key(&publication.index)
                    {
                        deletes.insert(k.clone());
                    }
                    continue;
                }
                served.insert(k.as_str());
                match s.blake3 {
                    Some(hash) => {
                        state.insert(
                            k.as_str(),
                            KeyState::Known {
                                hash,
                                headers: s.headers.clone(),
                            },
                        );
                        if !new.objects.contains_key(k) {
                            if s.ours || delete_foreign {
                                deletes.insert(k.clone());
                            } else {
                                kept += 1;
                            }
                        }
                    }
                    None => {
                        state.insert(k.as_str(), KeyState::Unknown { maybe: Vec::new() });
                        if !new.objects.contains_key(k) {
                            if delete_foreign {
                                deletes.insert(k.clone());
                            } else {
                                kept += 1;
                            }
                        }
                    }
                }
            }
            served_before = served.len();
            if keep != Keep::No {
                let n = deletes.iter().filter(|k| !super::is_reserved(k)).count();
                if n > 0 {
                    warnings.push(format!(
                        "--keep-removed: {n} object(s) no bundle names are kept; a reconcile \
                         cannot record them for a later delete, run again without it to delete them"
                    ));
                }
                kept += n;
                deletes.retain(|k| super::is_reserved(k));
            }
            switch_marker = Marker {
                sitebundle_site: super::marker::MARKER_VERSION,
                serving: Some(publication.clone()),
                pending: Vec::new(),
                removed: Vec::new(),
            };
        }
    }
    let mut writes = Vec::new();
    let mut unchanged = 0usize;
    for (k, o) in &new.objects {
        let headers = o.headers.clone().ok_or_else(|| SiteError::BadKey {
            path: k.clone(),
            reason: "internal: the new bundle's headers were not computed".into(),
        })?;
        let phase = if served.contains(k.as_str()) {
            Phase::Switch
        } else {
            Phase::Stage
        };
        let (action, check_first) = match state.get(k.as_str()) {
            None => (Some(Action::Upload), false),
            Some(KeyState::Known { hash, headers: h }) if *hash == o.hash => {
                if !features.headers || h.as_ref() == Some(&headers) {
                    (None, false)
                } else {
                    (Some(Action::SetHeaders), false)
                }
            }
            Some(KeyState::Known { .. }) => (Some(Action::Upload), false),
            Some(KeyState::Unknown { maybe }) => (Some(Action::Upload), maybe.contains(&o.hash)),
        };
        match action {
            None => unchanged += 1,
            Some(action) => writes.push(Write {
                key: k.clone(),
                hash: o.hash,
                size: o.size,
                page: is_page(&headers),
                headers,
                action,
                phase,
                check_first,
            }),
        }
    }
    writes.sort_by(|a, b| (a.phase, a.page, &a.key).cmp(&(b.phase, b.page, &b.key)));
    let real_deletes = deletes.iter().filter(|k| !super::is_reserved(k)).count();
    if real_deletes > 0 && !max_delete.allows(real_deletes, served_before) {
        return Err(SiteError::TooManyDeletes {
            target: target.to_string(),
            deletes: real_deletes,
            total: served_before,
            limit: max_delete.to_string(),
        });
    }
    Ok(Plan {
        target: target.to_string(),
        mode,
        publication,
        writes,
        deletes: deletes.into_iter().collect(),
        kept,
        unchanged,
        served_before,
        delete_indexes,
        stage_marker,
        switch_marker,
        final_marker,
        marker_version,
        marker_current,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::files::SiteObject;
    use crate::site::headers::{HeaderSpec, Rules};

    fn files(items: &[(&str, &[u8])]) -> SiteFiles {
        let rules = Rules::none();
        SiteFiles {
            objects: items
                .iter()
                .map(|(k, b)| {
                    (
                        k.to_string(),
                        SiteObject {
                            hash: FileHash::of(b),
                            size: b.len() as u64,
                            headers: Some(rules.headers(k)),
                        },
                    )
                })
                .collect(),
            warnings: Vec::new(),
        }
    }

    fn publication(f: &SiteFiles, tag: u8) -> Publication {
        Publication {
            manifest: Digest::of(&[tag]),
            id: Digest::of(&[tag, 0]),
            index: Digest::of(&[tag, 1]),
            objects: f.len() as u64,
            bytes: f.bytes(),
            headers: HeaderSpec::new(Vec::new()),
            channel: None,
            at: "2026-12-01T00:00:00Z".into(),
            actor: "t".into(),
        }
    }

    const FEATURES: Features = Features {
        headers: true,
        metadata_in_listing: false,
    };

    fn input<'a>(new: &'a SiteFiles, p: Publication, known: Known<'a>) -> Input<'a> {
        Input {
            target: "t",
            prefix: "",
            features: FEATURES,
            new,
            publication: p,
            known,
            keep: Keep::No,
            max_delete: MaxDelete::Percent(100.0),
            delete_foreign: false,
            now: 1_800_000_000,
        }
    }

    #[test]
    fn a_diff_writes_assets_then_pages_and_deletes_what_went() {
        let a = files(&[
            ("index.html", b"a"),
            ("app.1111aaaa.js", b"js1"),
            ("gone.png", b"x"),
        ]);
        let b = files(&[
            ("index.html", b"b"),
            ("app.2222bbbb.js", b"js2"),
            ("new.html", b"n"),
        ]);
        let (pa, pb) = (publication(&a, 1), publication(&b, 2));
        let marker = Marker {
            serving: Some(pa.clone()),
            ..Marker::empty()
        };
        let all: HashMap<Digest, SiteFiles> =
            [(files_key(&pa), a.clone()), (files_key(&pb), b.clone())].into();
        let p = plan(input(
            &b,
            pb.clone(),
            Known::Marker {
                marker: &marker,
                version: Version("v".into()),
                files: &all,
            },
        ))
        .expect("plan");
        let order: Vec<(&str, Phase)> =
            p.writes.iter().map(|w| (w.key.as_str(), w.phase)).collect();
        assert_eq!(
            order,
            vec![
                ("app.2222bbbb.js", Phase::Stage),
                ("new.html", Phase::Stage),
                ("index.html", Phase::Switch)
            ]
        );
        assert_eq!(p.deletes, vec!["app.1111aaaa.js", "gone.png"]);
        assert_eq!(p.delete_indexes, vec![pa.index]);
        assert_eq!(p.stage_marker.as_ref().map(|m| m.pending.len()), Some(1));
        assert_eq!(p.switch_marker.serving.as_ref(), Some(&pb));

        // Interrupted after the stage: the marker says b is pending; a re-run checks the keys
        // b may have written instead of trusting them, and deletes the same.
        let staged = p.stage_marker.clone().expect("stage marker");
        let p2 = plan(input(
            &b,
            pb.clone(),
            Known::Marker {
                marker: &staged,
                version: Version("v2".into()),
                files: &all,
            },
        ))
        .expect("plan");
        assert_eq!(p2.writes.len(), 3);
        assert!(p2.writes.iter().all(|w| w.check_first));
        assert_eq!(p2.deletes, p.deletes);

        // Another bundle over the unfinished one: keys b may have written are rewritten, and
        // b's own keys are deleted.
        let c = files(&[("index.html", b"a"), ("app.1111aaaa.js", b"js1")]);
        let pc = publication(&c, 3);
        let mut all2 = all.clone();
        all2.insert(files_key(&pc), c.clone());
        let p3 = plan(input(
            &c,
            pc,
            Known::Marker {
                marker: &staged,
                version: Version("v2".into()),
                files: &all2,
            },
        ))
        .expect("plan");
        let keys: Vec<&str> = p3.writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, vec!["index.html"]);
        assert_eq!(p3.deletes, vec!["app.2222bbbb.js", "gone.png", "new.html"]);
    }

    #[test]
    fn keep_removed_defers_deletes_to_the_next_publish() {
        let a = files(&[("index.html", b"a"), ("old.css", b"o")]);
        let b = files(&[("index.html", b"b")]);
        let c = files(&[("index.html", b"c")]);
        let (pa, pb, pc) = (publication(&a, 1), publication(&b, 2), publication(&c, 3));
        let all: HashMap<Digest, SiteFiles> = [
            (files_key(&pa), a.clone()),
            (files_key(&pb), b.clone()),
            (files_key(&pc), c.clone()),
        ]
        .into();
        let m = Marker {
            serving: Some(pa),
            ..Marker::empty()
        };
        let mut i = input(
            &b,
            pb,
            Known::Marker {
                marker: &m,
                version: Version("1".into()),
                files: &all,
            },
        );
        i.keep = Keep::NextPublish;
        let p = plan(i).expect("plan");
        assert!(p.deletes.is_empty());
        assert_eq!(p.kept, 1);
        let m2 = p.switch_marker.clone();
        let p2 = plan(input(
            &c,
            pc,
            Known::Marker {
                marker: &m2,
                version: Version("2".into()),
                files: &all,
            },
        ))
        .expect("plan");
        assert_eq!(p2.deletes, vec!["old.css"]);
    }

    #[test]
    fn reconcile_uses_metadata_and_leaves_foreign_keys() {
        let b = files(&[("index.html", b"b"), ("same.png", b"s"), ("hdr.css", b"h")]);
        let pb = publication(&b, 2);
        let rules = Rules::none();
        let listed: BTreeMap<String, Stored> = [
            (
                "same.png".to_string(),
                Stored {
                    size: 1,
                    blake3: Some(FileHash::of(b"s")),
                    ours: true,
                    headers: Some(rules.headers("same.png")),
                },
            ),
            (
                "hdr.css".to_string(),
                Stored {
                    size: 1,
                    blake3: Some(FileHash::of(b"h")),
                    ours: true,
                    headers: Some(Headers {
                        content_type: "text/plain".into(),
                        ..Default::default()
                    }),
                },
            ),
            (
                "ours-old.html".to_string(),
                Stored {
                    size: 1,
                    blake3: Some(FileHash::of(b"z")),
                    ours: true,
                    headers: None,
                },
            ),
            (
                "foreign.txt".to_string(),
                Stored {
                    size: 1,
                    blake3: None,
                    ours: false,
                    headers: None,
                },
            ),
        ]
        .into();
        let p = plan(input(
            &b,
            pb,
            Known::Listing {
                listed: &listed,
                version: None,
            },
        ))
        .expect("plan");
        let w: Vec<(&str, Action)> = p
            .writes
            .iter()
            .map(|w| (w.key.as_str(), w.action))
            .collect();
        assert_eq!(
            w,
            vec![
                ("index.html", Action::Upload),
                ("hdr.css", Action::SetHeaders)
            ]
        );
        assert_eq!(p.deletes, vec!["ours-old.html"]);
        assert_eq!(p.kept, 1);
    }

    #[test]
    fn max_delete_refuses_before_anything_is_written() {
        let a = files(&[("a.html", b"1"), ("b.html", b"2"), ("c.html", b"3")]);
        let b = files(&[("a.html", b"1")]);
        let (pa, pb) = (publication(&a, 1), publication(&b, 2));
        let all: HashMap<Digest, SiteFiles> =
            [(files_key(&pa), a), (files_key(&pb), b.clone())].into();
        let m = Marker {
            serving: Some(pa),
            ..Marker::empty()
        };
        let mut i = input(
            &b,
            pb,
            Known::Marker {
                marker: &m,
                version: Version("1".into()),
                files: &all,
            },
        );
        i.max_delete = MaxDelete::Count(1);
        assert!(matches!(
            plan(i),
            Err(SiteError::TooManyDeletes { deletes: 2, .. })
        ));
        assert_eq!("25%".parse::<MaxDelete>(), Ok(MaxDelete::Percent(25.0)));
        assert_eq!(
            "24h".parse::<Keep>(),
            Ok(Keep::For(Duration::from_secs(86_400)))
        );
        assert!("3w".parse::<Keep>().is_err());
    }
}
