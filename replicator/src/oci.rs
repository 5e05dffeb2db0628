//! The OCI registry target, over this crate's distribution client ([`crate::registry`]), so every
//! answer is read within its cap, redirects follow one rule, and credentials stay with the registry
//! ([`crate::net`]).
//!
//! - Blobs: `HEAD` to skip what is there; uploads are monolithic (POST then PUT), because ECR drops
//!   every chunk after the first of a chunked upload (aws/containers-roadmap#2831) and Debian's
//!   docker-registry 2.8 ignores a single-request POST with a body. Downloads stream; the caller
//!   verifies ([`crate::download_blob`]). A blob download may be redirected to storage on another
//!   host (S3, a CDN): it is followed without credentials, never from https to http.
//! - Manifests are pushed by digest and always fetched with the OCI media types in `Accept`
//!   (docker-registry 2.8 answers 404 to a GET of an OCI manifest without them).
//! - **Channels are tags.** The distribution API has no conditional tag update, so
//!   [`Target::swap_channel`] reads the tag, compares it with what the caller expects, PUTs the
//!   manifest under the tag, and reads the tag again: a concurrent writer that slips in between
//!   the read and the write is **detected afterwards** (reported as [`Error::ChannelConflict`]),
//!   not prevented. The last writer wins on the registry; `status` shows the disagreement.
//! - **History** of channel `C` is a small OCI artifact tagged `sitebundle-history-C`: an image
//!   manifest with `artifactType` [`MEDIA_HISTORY_ARTIFACT`], the OCI empty config, and one layer
//!   of JSON lines (one event per line). Appending rewrites the artifact with one more line and
//!   moves the tag the same read-compare-write-reread way as channels; old artifacts stay
//!   reachable by digest until the registry garbage-collects them. `list_channels` hides these tags.
//! - **Bundle ids**: the tag `sitebundle-id-<hex>` names the manifest that carries bundle id
//!   `sha256:<hex>` ([`crate::resolve`]), written right after the manifest and before any channel,
//!   read-compare-write-reread like a channel; the rule of [`crate::resolve::replaces`] decides
//!   whether a push moves it. A registry keeps a tagged manifest from garbage collection too.
//! - Cross-repository mounts: when one push goes to several repositories of the same registry,
//!   blobs are uploaded to the first and mounted into the others ([`Target::mount_blob`]).
//! - Plain HTTP with `oci+http://`; extra CAs from `SITEBUNDLE_REGISTRY_CA`; credentials from
//!   [`crate::auth`].

use std::path::Path;

use async_trait::async_trait;
use bundle::manifest::{MEDIA_INDEX, MEDIA_MANIFEST};
use bundle::Digest;
use bytes::Bytes;
use oci_client::secrets::RegistryAuth;

use crate::channel::{validate_channel, ChannelRecord, HistoryEvent, RESERVED_PREFIX};
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::target::{check_digest, BlobStream, Capabilities, ChannelMode, Target};

/// Media types we accept for manifests.
const ACCEPT: &[&str] = &[MEDIA_MANIFEST, MEDIA_INDEX];
/// Tags listed per page.
const TAG_PAGE: usize = 1000;

/// A repository in an OCI registry.
pub struct OciTarget {
    name: String,
    registry: String,
    repository: String,
    client: Registry,
}

impl std::fmt::Debug for OciTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print credentials.
        f.debug_struct("OciTarget")
            .field("name", &self.name)
            .finish()
    }
}

impl OciTarget {
    /// Connect to `registry`/`repository`, with credentials and CA from the environment.
    pub fn new(registry: &str, repository: &str, plain_http: bool) -> Result<OciTarget> {
        let (auth, _) = crate::auth::resolve(registry)?;
        let ca = crate::net::extra_ca()?.map(|(_, pem)| pem);
        OciTarget::with_auth(registry, repository, plain_http, auth, ca)
    }

    /// As [`OciTarget::new`] with explicit credentials and extra CA certificates (PEM).
    pub fn with_auth(
        registry: &str,
        repository: &str,
        plain_http: bool,
        auth: RegistryAuth,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<OciTarget> {
        let scheme = if plain_http { "oci+http" } else { "oci" };
        let name = format!("{scheme}://{registry}/{repository}");
        let client = Registry::new(
            &name,
            registry,
            repository,
            plain_http,
            auth,
            ca_pem.as_deref(),
        )?;
        Ok(OciTarget {
            name,
            registry: registry.to_string(),
            repository: repository.to_string(),
            client,
        })
    }

    /// The manifest a tag names, or `None`.
    async fn read_tag(&self, tag: &str) -> Result<Option<(Bytes, Digest)>> {
        match self.client.get_manifest(tag, ACCEPT).await? {
            Some(bytes) => {
                let b = bytes.clone();
                let d = crate::blocking::run(move || Digest::of(&b)).await?;
                Ok(Some((bytes, d)))
            }
            None => Ok(None),
        }
    }

    fn record_from(&self, tag: &str, bytes: &[u8], manifest: Digest) -> Result<ChannelRecord> {
        let m = bundle::manifest::parse_manifest(bytes).map_err(|e| Error::Corrupt {
            target: self.name.clone(),
            what: format!("tag {tag}"),
            reason: format!("does not name a sitebundle manifest: {e}"),
        })?;
        Ok(ChannelRecord {
            manifest,
            id: m.config.digest,
            size: bytes.len() as u64,
        })
    }
}

/// Tag prefix of the history artifact of a channel.
pub const HISTORY_TAG_PREFIX: &str = "sitebundle-history-";
/// `artifactType` of a history artifact.
pub const MEDIA_HISTORY_ARTIFACT: &str = "application/vnd.sitebundle.history.v1";
/// Media type of the history layer: one JSON event per line.
pub const MEDIA_HISTORY_LAYER: &str = "application/vnd.sitebundle.history.v1+jsonl";
/// The OCI empty config (`{}`).
const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Largest history layer read: it is held in memory ([`crate::net::MAX_HISTORY_BYTES`]).
const MAX_HISTORY_BYTES: u64 = crate::net::MAX_HISTORY_BYTES;
/// Attempts at recording a bundle id while others record it concurrently.
const ID_TAG_ATTEMPTS: usize = 4;
/// Attempts at appending while others append concurrently.
const HISTORY_ATTEMPTS: usize = 8;

/// The tag holding a channel's history.
fn history_tag(channel: &str) -> Result<String> {
    let t = format!("{HISTORY_TAG_PREFIX}{channel}");
    if t.len() > crate::channel::MAX_CHANNEL_LEN {
        return Err(Error::InvalidChannel {
            name: channel.to_string(),
            reason: "too long to keep history on a registry (at most 109 characters)",
        });
    }
    Ok(t)
}

impl OciTarget {
    /// The history artifact under `tag`: its manifest digest and events.
    async fn read_history(&self, tag: &str) -> Result<Option<(Digest, Vec<HistoryEvent>)>> {
        let Some((bytes, digest)) = self.read_tag(tag).await? else {
            return Ok(None);
        };
        let corrupt = |reason: String| Error::Corrupt {
            target: self.name.clone(),
            what: format!("tag {tag}"),
            reason,
        };
        let m: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let layer: Digest = m["layers"][0]["digest"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| corrupt("not a sitebundle history artifact".into()))?;
        // Refuse before downloading what could not be kept in memory anyway.
        if m["layers"][0]["size"]
            .as_u64()
            .is_none_or(|n| n > MAX_HISTORY_BYTES)
        {
            return Err(corrupt(format!(
                "history layer size missing or above {MAX_HISTORY_BYTES} bytes"
            )));
        }
        let data = crate::target::read_blob_verified(self, &layer, MAX_HISTORY_BYTES).await?;
        let mut events = Vec::new();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            events.push(
                serde_json::from_slice::<HistoryEvent>(line)
                    .map_err(|e| corrupt(format!("history event: {e}")))?,
            );
        }
        Ok(Some((digest, events)))
    }

    /// Upload the history layer, the empty config and the artifact manifest (by digest).
    async fn put_history_blobs(&self, jsonl: Vec<u8>, channel: &str) -> Result<(Bytes, Digest)> {
        let empty: &[u8] = b"{}";
        let (layer, cfg) = crate::blocking::run({
            let j = jsonl.clone();
            move || (Digest::of(&j), Digest::of(b"{}"))
        })
        .await?;
        for (d, data) in [(cfg, empty.to_vec()), (layer, jsonl.clone())] {
            if !self.has_blob(&d).await? {
                self.client.push_blob(&d, Bytes::from(data)).await?;
            }
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "artifactType": MEDIA_HISTORY_ARTIFACT,
            "config": {"mediaType": MEDIA_EMPTY, "digest": cfg.to_string(), "size": 2, "data": "e30="},
            "layers": [{"mediaType": MEDIA_HISTORY_LAYER, "digest": layer.to_string(), "size": jsonl.len()}],
            "annotations": {"dev.sitebundle.channel": channel},
        });
        let bytes =
            Bytes::from(serde_json::to_vec(&manifest).map_err(|e| Error::Task(e.to_string()))?);
        let b = bytes.clone();
        let digest = crate::blocking::run(move || Digest::of(&b)).await?;
        self.client
            .put_manifest(&digest.to_string(), bytes.clone(), MEDIA_MANIFEST)
            .await?;
        Ok((bytes, digest))
    }
}

#[async_trait]
impl Target for OciTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            writable: true,
            channels: ChannelMode::ReadCheckWrite,
            history: true,
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        self.client.has_blob(digest).await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<BlobStream> {
        self.client.get_blob(digest).await
    }

    async fn get_blob_range(&self, digest: &Digest, offset: u64, len: u64) -> Result<Bytes> {
        let out = self.client.get_blob_range(digest, offset, len).await?;
        if out.len() as u64 != len {
            return Err(Error::Corrupt {
                target: self.name.clone(),
                what: format!("blob {digest}"),
                reason: format!("range {offset}+{len} returned {} bytes", out.len()),
            });
        }
        Ok(out)
    }

    async fn get_manifest(&self, digest: &Digest) -> Result<Bytes> {
        let bytes = self
            .client
            .get_manifest(&digest.to_string(), ACCEPT)
            .await?
            .ok_or_else(|| Error::NotFound {
                target: self.name.clone(),
                what: format!("manifest {digest}"),
            })?;
        let b = bytes.clone();
        let found = crate::blocking::run(move || Digest::of(&b)).await?;
        check_digest(self, &format!("manifest {digest}"), digest, &found)?;
        Ok(bytes)
    }

    async fn read_channel(&self, channel: &str) -> Result<Option<ChannelRecord>> {
        validate_channel(channel)?;
        match self.read_tag(channel).await? {
            Some((bytes, d)) => Ok(Some(self.record_from(channel, &bytes, d)?)),
            None => Ok(None),
        }
    }

    async fn list_channels(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = self
            .client
            .list_tags(TAG_PAGE)
            .await?
            .into_iter()
            .filter(|t| !t.starts_with(RESERVED_PREFIX) && validate_channel(t).is_ok())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn history(&self, channel: &str) -> Result<Vec<HistoryEvent>> {
        validate_channel(channel)?;
        let tag = history_tag(channel)?;
        Ok(self
            .read_history(&tag)
            .await?
            .map(|(_, h)| h)
            .unwrap_or_default())
    }

    async fn put_blob(&self, digest: &Digest, size: u64, file: &Path) -> Result<()> {
        let len = tokio::fs::metadata(file)
            .await
            .map_err(Error::io("read", file))?
            .len();
        if len != size {
            return Err(Error::Io {
                op: "read",
                path: file.to_path_buf(),
                source: std::io::Error::other("file size differs from the blob descriptor"),
            });
        }
        // Streamed from the store's verified blob; the registry checks the digest.
        self.client.push_blob_file(digest, file, size).await?;
        // Verify: the registry now has it.
        if !self.has_blob(digest).await? {
            return Err(Error::NotFound {
                target: self.name.clone(),
                what: format!("blob {digest} right after uploading it"),
            });
        }
        Ok(())
    }

    async fn put_manifest(&self, digest: &Digest, bytes: Bytes) -> Result<()> {
        self.client
            .put_manifest(&digest.to_string(), bytes, MEDIA_MANIFEST)
            .await
    }

    async fn swap_channel(
        &self,
        channel: &str,
        expected: Option<&ChannelRecord>,
        new: &ChannelRecord,
    ) -> Result<()> {
        validate_channel(channel)?;
        let conflict = |found: Option<Digest>| Error::ChannelConflict {
            target: self.name.clone(),
            channel: channel.to_string(),
            expected: ChannelRecord::describe(expected),
            found: found.map_or_else(|| "nothing".into(), |d| d.to_string()),
        };
        let cur = self.read_tag(channel).await?.map(|(_, d)| d);
        if cur != expected.map(|r| r.manifest) {
            return Err(conflict(cur));
        }
        let bytes = self.get_manifest(&new.manifest).await?;
        self.client
            .put_manifest(channel, bytes, MEDIA_MANIFEST)
            .await?;
        // Detect a concurrent writer between our read and our write.
        let after = self.read_tag(channel).await?.map(|(_, d)| d);
        if after != Some(new.manifest) {
            return Err(Error::ChannelConflict {
                target: self.name.clone(),
                channel: channel.to_string(),
                expected: new.manifest.to_string(),
                found: after.map_or_else(|| "nothing".into(), |d| d.to_string()),
            });
        }
        Ok(())
    }

    async fn lookup_id(&self, id: &Digest) -> Result<Option<crate::resolve::Found>> {
        Ok(self
            .read_tag(&crate::resolve::id_tag(id))
            .await?
            .map(|(bytes, manifest)| crate::resolve::Found {
                manifest,
                bytes: Some(bytes),
            }))
    }

    async fn record_id(&self, manifest: &Digest, bytes: &Bytes) -> Result<()> {
        use crate::resolve::IdRecord;
        let new = IdRecord::of_manifest(*manifest, bytes)?;
        let tag = crate::resolve::id_tag(&new.id);
        let current = |b: &[u8], d: Digest| -> Result<IdRecord> {
            let r = IdRecord::of_manifest(d, b).map_err(|e| Error::Corrupt {
                target: self.name.clone(),
                what: format!("tag {tag}"),
                reason: format!(
                    "does not name a sitebundle manifest: {}",
                    crate::error::chain(&e)
                ),
            })?;
            if r.id != new.id {
                return Err(Error::Corrupt {
                    target: self.name.clone(),
                    what: format!("tag {tag}"),
                    reason: format!("names a manifest of bundle id {}", r.id),
                });
            }
            Ok(r)
        };
        // No conditional tag update exists: read, decide, write, read back. A concurrent push of
        // the other encoding can slip in between (protocol.md); a re-push settles it.
        for _ in 0..ID_TAG_ATTEMPTS {
            if let Some((b, d)) = self.read_tag(&tag).await? {
                if let Ok(r) = current(&b, d) {
                    if !r.yields_to(&new) {
                        return Ok(());
                    }
                }
            }
            self.client
                .put_manifest(&tag, bytes.clone(), MEDIA_MANIFEST)
                .await?;
            // Ours, or someone else's manifest of this id that the rule keeps: done. Otherwise
            // (a concurrent writer the rule does not prefer) decide again.
            if let Some((b, d)) = self.read_tag(&tag).await? {
                if d == new.manifest || !current(&b, d)?.yields_to(&new) {
                    return Ok(());
                }
            }
        }
        Err(Error::ChannelConflict {
            target: self.name.clone(),
            channel: tag,
            expected: new.manifest.to_string(),
            found: "concurrent writers".into(),
        })
    }

    fn registry_repository(&self) -> Option<(&str, &str)> {
        Some((&self.registry, &self.repository))
    }

    async fn mount_blob(&self, digest: &Digest, from: &dyn Target) -> Result<bool> {
        let Some((reg, repo)) = from.registry_repository() else {
            return Ok(false);
        };
        if reg != self.registry || repo == self.repository {
            return Ok(false);
        }
        match self.client.mount_blob(digest, repo).await {
            // A registry may answer 202 (start an upload) instead of mounting: check.
            Ok(true) => self.has_blob(digest).await,
            Ok(false) | Err(_) => Ok(false),
        }
    }

    async fn append_history(&self, event: &HistoryEvent) -> Result<()> {
        validate_channel(&event.channel)?;
        let tag = history_tag(&event.channel)?;
        for _ in 0..HISTORY_ATTEMPTS {
            let cur = self.read_history(&tag).await?;
            let (before, mut events) = match cur {
                Some((d, h)) => (Some(d), h),
                None => (None, Vec::new()),
            };
            let mut ev = event.clone();
            ev.seq = events.last().map_or(1, |e| e.seq + 1);
            events.push(ev);
            let mut jsonl = Vec::new();
            for e in &events {
                jsonl.extend(serde_json::to_vec(e).map_err(|e| Error::Task(e.to_string()))?);
                jsonl.push(b'\n');
            }
            let (manifest, digest) = self.put_history_blobs(jsonl, &event.channel).await?;
            // Read-compare-write the tag, then read it back (no CAS on tags; see module docs).
            let now = self.read_tag(&tag).await?.map(|(_, d)| d);
            if now != before {
                continue;
            }
            self.client
                .put_manifest(&tag, manifest, MEDIA_MANIFEST)
                .await?;
            if self.read_tag(&tag).await?.map(|(_, d)| d) == Some(digest) {
                return Ok(());
            }
        }
        Err(Error::ChannelConflict {
            target: self.name.clone(),
            channel: tag,
            expected: "an unchanged history".into(),
            found: "concurrent appends".into(),
        })
    }
}
