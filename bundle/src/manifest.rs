//! OCI manifest, image config and descriptors, as sitebundle writes and accepts them.
//!
//! A bundle is an ordinary image manifest (no top-level `artifactType`: containerd only mounts
//! image-shaped manifests as Kubernetes image volumes, and CRI-O treats any `artifactType` as an
//! opaque artifact) with a real image config. sitebundle marks it with annotations and config
//! labels under [`ANNOTATION_PREFIX`].
//!
//! **Identity.** The bundle id is the digest of the config blob. The config lists the `diff_ids`
//! (sha256 of each uncompressed, canonical tar layer) and the sha256 of the index, so it depends on
//! content only, never on zstd's output. The manifest digest additionally covers compressed bytes
//! and is what a registry pull by digest or a Kubernetes image reference needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compress::Compression;
use crate::digest::Digest;
use crate::error::Error;

/// OCI image manifest media type.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// zstd-compressed tar layer.
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// gzip-compressed tar layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Prefix of every annotation and label key sitebundle defines.
pub const ANNOTATION_PREFIX: &str = "dev.sitebundle.";
/// Annotation / label: format version ("1").
pub const KEY_FORMAT: &str = "dev.sitebundle.format";
/// Config label: sha256 of the uncompressed index.
pub const KEY_INDEX: &str = "dev.sitebundle.index";
/// Config label: number of regular files.
pub const KEY_FILES: &str = "dev.sitebundle.files";
/// Config label: total bytes of regular files.
pub const KEY_BYTES: &str = "dev.sitebundle.bytes";
/// The format version this library writes and reads.
pub const FORMAT_VERSION: &str = "1";
/// OCI layout annotation naming a tag.
pub const KEY_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Most layers a bundle may have. Runtimes cap layer counts (overlayfs mount options; Docker's
/// 127), so the grouping rule keeps well below.
pub const MAX_LAYERS: usize = 100;
/// Largest manifest or config accepted when reading (registries commonly cap manifests at 4 MiB).
pub const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its sha256 digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Optional annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// [`MEDIA_MANIFEST`].
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The config descriptor; its digest is the bundle id.
    pub config: Descriptor,
    /// Layer descriptors, layer 0 first.
    pub layers: Vec<Descriptor>,
    /// Manifest annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The `rootfs` section of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always "layers".
    #[serde(rename = "type")]
    pub kind: String,
    /// sha256 of each uncompressed layer, in order.
    pub diff_ids: Vec<Digest>,
}

/// The `config` section of an image config (only labels are used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunConfig {
    /// Labels.
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
}

/// An OCI image config, as sitebundle writes it (field order is the canonical order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// CPU architecture the image claims; a site runs anywhere, so this only satisfies runtimes.
    pub architecture: String,
    /// Run config carrying the sitebundle labels.
    pub config: RunConfig,
    /// Operating system ("linux").
    pub os: String,
    /// Layer diff ids.
    pub rootfs: RootFs,
}

/// What a parsed and checked bundle manifest + config say.
#[derive(Debug, Clone)]
pub struct BundleMeta {
    /// Manifest digest.
    pub manifest_digest: Digest,
    /// Parsed manifest.
    pub manifest: Manifest,
    /// Parsed config.
    pub config: ImageConfig,
    /// Layer compression.
    pub compression: Compression,
    /// sha256 of the uncompressed index.
    pub index_digest: Digest,
}

impl BundleMeta {
    /// The bundle id (config digest).
    pub fn id(&self) -> Digest {
        self.manifest.config.digest
    }
}

impl ImageConfig {
    /// Canonical bytes: serde_json, fields in declaration order, maps sorted, no whitespace.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl Manifest {
    /// Canonical bytes (as for [`ImageConfig::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parse a manifest blob and check that it is a sitebundle manifest this version can read.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Error> {
    let what = "manifest";
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::corrupt(what, "larger than 4 MiB"));
    }
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
    // A manifest with an artifactType is not image-shaped; serde ignores unknown fields, so check.
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
    if raw.get("artifactType").is_some() {
        return Err(Error::corrupt(
            what,
            "has an artifactType: not a sitebundle image manifest",
        ));
    }
    if m.schema_version != 2 || m.media_type != MEDIA_MANIFEST {
        return Err(Error::corrupt(
            what,
            "not an OCI image manifest (schemaVersion 2, mediaType image manifest)",
        ));
    }
    match m.annotations.get(KEY_FORMAT).map(String::as_str) {
        Some(FORMAT_VERSION) => {}
        Some(v) => {
            return Err(Error::corrupt(
                what,
                format!(
                "sitebundle format {v} is not supported by this version (reads {FORMAT_VERSION})"
            ),
            ))
        }
        None => {
            return Err(Error::corrupt(
                what,
                "no dev.sitebundle.format annotation: not a sitebundle",
            ))
        }
    }
    if m.config.media_type != MEDIA_CONFIG {
        return Err(Error::corrupt(what, "config is not an OCI image config"));
    }
    if m.layers.is_empty() || m.layers.len() > MAX_LAYERS {
        return Err(Error::corrupt(
            what,
            format!(
                "has {} layers; a bundle has 1 to {MAX_LAYERS}",
                m.layers.len()
            ),
        ));
    }
    let first = Compression::from_media_type(&m.layers[0].media_type).ok_or_else(|| {
        Error::corrupt(
            what,
            format!("unsupported layer media type {:?}", m.layers[0].media_type),
        )
    })?;
    if m.layers.iter().any(|l| l.media_type != first.media_type()) {
        return Err(Error::corrupt(what, "layers mix compressions"));
    }
    Ok(m)
}

/// Parse a config blob and check it against its manifest.
pub fn parse_config(manifest: &Manifest, bytes: &[u8]) -> Result<(ImageConfig, Digest), Error> {
    let what = "image config";
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::corrupt(what, "larger than 4 MiB"));
    }
    let c: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
    if c.rootfs.kind != "layers" {
        return Err(Error::corrupt(what, "rootfs.type is not \"layers\""));
    }
    if c.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(Error::corrupt(
            what,
            format!(
                "lists {} diff_ids for {} layers",
                c.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    if c.config.labels.get(KEY_FORMAT).map(String::as_str) != Some(FORMAT_VERSION) {
        return Err(Error::corrupt(
            what,
            "missing or unsupported dev.sitebundle.format label",
        ));
    }
    let index: Digest = c
        .config
        .labels
        .get(KEY_INDEX)
        .ok_or_else(|| Error::corrupt(what, "no dev.sitebundle.index label"))?
        .parse()
        .map_err(|_| Error::corrupt(what, "dev.sitebundle.index is not a sha256 digest"))?;
    Ok((c, index))
}
