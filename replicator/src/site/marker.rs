//! The marker: `.well-known/sitebundle.json`, what a website target serves and what it may still
//! hold from earlier publishes.
//!
//! ```json
//! {"sitebundle_site":1,
//!  "serving":{"manifest":"sha256:…","id":"sha256:…","index":"sha256:…","objects":5882,
//!             "bytes":152017133,"headers":{"mime_table":1,"rules":[…]},"channel":"prod",
//!             "at":"2026-12-01T10:00:00Z","actor":"github run 42"},
//!  "pending":[…publications started over `serving`, not switched yet…],
//!  "removed":[{"publication":{…},"complete":true,"after":"next-publish"}]}
//! ```
//!
//! Why it holds more than "what is served": a bucket is not atomic, so between two publishes a
//! key may hold the bytes of any publication the marker still names. The marker lists them all,
//! oldest first, and the index of each is stored at `.well-known/sitebundle/index/<hex>` (the
//! sha256 the marker names, checked on read), so the next publish knows what every key may hold
//! without listing the bucket. A publication is *complete* once it was served (its keys hold its
//! bytes, unless a later publication wrote them); a pending or abandoned one may have written any
//! of its keys. The marker is small (one entry per publication, at most [`MAX_ENTRIES`]) and is
//! read with a size cap, as everything from a store is.

use bundle::Digest;
use serde::{Deserialize, Serialize};

use super::headers::HeaderSpec;
use super::SiteError;

/// Version of the marker format.
pub const MARKER_VERSION: u32 = 1;
/// Largest marker read.
pub const MAX_MARKER_BYTES: u64 = 1024 * 1024;
/// Most publications a marker may name (serving + pending + removed).
pub const MAX_ENTRIES: usize = 32;

/// One bundle published (or being published) to a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publication {
    /// Manifest digest.
    pub manifest: Digest,
    /// Bundle id.
    pub id: Digest,
    /// sha256 of the bundle's index (the config's `dev.sitebundle.index`); the index is stored at
    /// [`index_key`].
    pub index: Digest,
    /// Objects it publishes.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The header rules its objects were given.
    pub headers: HeaderSpec,
    /// The channel move it followed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// When it started (pending) or switched (serving), RFC 3339 UTC.
    pub at: String,
    /// Who published it.
    pub actor: String,
}

/// When the objects of a replaced publication are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum After {
    /// Right after the switch (the default).
    Now,
    /// At the next publish's switch (`--keep-removed`).
    NextPublish,
    /// At the first switch after this time, RFC 3339 UTC (`--keep-removed 24h`).
    Time(String),
}

/// A replaced (or abandoned) publication whose objects may still be in the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Removed {
    /// The publication.
    pub publication: Publication,
    /// It was served (so its keys hold its bytes unless a later publication wrote them).
    pub complete: bool,
    /// When its remaining objects go.
    pub after: After,
}

/// The marker document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Marker {
    /// Always [`MARKER_VERSION`].
    pub sitebundle_site: u32,
    /// What the target serves (`None`: nothing yet, the first publish is pending).
    pub serving: Option<Publication>,
    /// Publishes started over `serving` and not switched, oldest first.
    #[serde(default)]
    pub pending: Vec<Publication>,
    /// Earlier publications whose objects are still to be deleted, oldest first.
    #[serde(default)]
    pub removed: Vec<Removed>,
}

/// Key of a publication's index, relative to the target's prefix.
pub fn index_key(index: &Digest) -> String {
    format!("{}index/{}", super::RESERVED_PREFIX, index.hex())
}

impl Marker {
    /// A marker for a target that serves nothing yet.
    pub fn empty() -> Marker {
        Marker {
            sitebundle_site: MARKER_VERSION,
            ..Default::default()
        }
    }

    /// Parse and check marker bytes read from `target`.
    pub fn parse(target: &str, bytes: &[u8]) -> Result<Marker, SiteError> {
        let bad = |reason: String| SiteError::BadMarker {
            target: target.to_string(),
            what: super::MARKER_KEY.to_string(),
            reason,
        };
        if bytes.len() as u64 > MAX_MARKER_BYTES {
            return Err(bad(format!("larger than {MAX_MARKER_BYTES} bytes")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        match v.get("sitebundle_site").and_then(|x| x.as_u64()) {
            Some(n) if n == u64::from(MARKER_VERSION) => {}
            Some(n) => {
                return Err(bad(format!(
                "marker version {n}; this sitebundle reads version {MARKER_VERSION} (upgrade it)"
            )))
            }
            None => return Err(bad("not a sitebundle marker (no sitebundle_site)".into())),
        }
        let m: Marker =
            serde_json::from_value(v).map_err(|e| bad(format!("malformed marker: {e}")))?;
        let n = m.entries();
        if n > MAX_ENTRIES {
            return Err(SiteError::TooManyUnfinished {
                target: target.to_string(),
                count: n,
                max: MAX_ENTRIES,
            });
        }
        for p in m.publications() {
            if let Some(c) = &p.channel {
                crate::channel::validate_channel(c)
                    .map_err(|_| bad(format!("bad channel name {c:?}")))?;
            }
        }
        Ok(m)
    }

    /// The marker's bytes (compact JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// How many publications it names.
    pub fn entries(&self) -> usize {
        usize::from(self.serving.is_some()) + self.pending.len() + self.removed.len()
    }

    /// Every publication it names.
    pub fn publications(&self) -> impl Iterator<Item = &Publication> {
        self.removed
            .iter()
            .map(|r| &r.publication)
            .chain(self.serving.iter())
            .chain(self.pending.iter())
    }

    /// Is the target complete: serving a bundle with no publish left unfinished?
    pub fn is_complete(&self) -> bool {
        self.serving.is_some() && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication(n: u8) -> Publication {
        Publication {
            manifest: Digest::of(&[n]),
            id: Digest::of(&[n, 1]),
            index: Digest::of(&[n, 2]),
            objects: 3,
            bytes: 4,
            headers: HeaderSpec::new(Vec::new()),
            channel: Some("prod".into()),
            at: "2026-12-01T10:00:00Z".into(),
            actor: "me".into(),
        }
    }

    #[test]
    fn round_trips_and_refuses_what_it_does_not_know() {
        let m = Marker {
            serving: Some(publication(1)),
            pending: vec![publication(2)],
            removed: vec![Removed {
                publication: publication(0),
                complete: true,
                after: After::Time("2026-12-02T10:00:00Z".into()),
            }],
            ..Marker::empty()
        };
        let b = m.to_bytes();
        assert_eq!(Marker::parse("t", &b).expect("parse"), m);
        assert!(!m.is_complete());
        for bad in [
            &b"{}"[..],
            br#"{"sitebundle_site":2,"serving":null}"#,
            br#"{"sitebundle_site":1,"serving":null,"extra":1}"#,
            b"not json",
        ] {
            assert!(
                Marker::parse("t", bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = vec![b' '; MAX_MARKER_BYTES as usize + 1];
        assert!(Marker::parse("t", &big).is_err());
    }
}
