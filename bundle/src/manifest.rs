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

use crate::compress::LayerEncoding;
use crate::digest::Digest;
use crate::error::Error;

/// OCI image manifest media type.
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker image manifest, schema 2: what `skopeo copy --format v2s2` writes (same config blob,
/// Docker media types, no annotations). Readers accept it; writers never write it.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image index media type.
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config media type (the config descriptor of a Docker schema 2 manifest).
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// zstd-compressed tar layer.
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// gzip-compressed tar layer.
pub const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Uncompressed tar layer (a copy may store layers so; sitebundle never writes it).
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's gzip layer, in Docker schema 2 manifests.
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's uncompressed layer.
pub const MEDIA_DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
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
pub const MAX_JSON_BYTES: u64 = crate::limits::MAX_JSON_BYTES;
/// Longest `os`, `architecture` or `variant` value.
pub const MAX_PLATFORM_FIELD: usize = 32;

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
    /// CPU variant (`v8` for `linux/arm64/v8`), as the OCI image spec has it. Last, so the
    /// members stay in alphabetical order, and absent unless given, so bundles built without
    /// one keep their ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
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
    /// How each layer blob is encoded (copies may re-compress some layers and not others).
    pub encodings: Vec<LayerEncoding>,
    /// What the config's labels declare.
    pub labels: Labels,
    /// sha256 of the uncompressed index.
    pub index_digest: Digest,
}

impl BundleMeta {
    /// The bundle id (config digest).
    pub fn id(&self) -> Digest {
        self.manifest.config.digest
    }

    /// `zstd`, `gzip` or `tar` when every layer is encoded so, else `mixed`.
    pub fn compression_name(&self) -> &'static str {
        match self.encodings.split_first() {
            Some((first, rest)) if rest.iter().all(|e| e == first) => first.name(),
            _ => "mixed",
        }
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

/// What the config's labels say (checked against the index by the reader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labels {
    /// `dev.sitebundle.index`: sha256 of the uncompressed index.
    pub index: Digest,
    /// `dev.sitebundle.files`: the number of `f` entries of the index.
    pub files: u64,
    /// `dev.sitebundle.bytes`: the sum of the sizes of all `f` entries (a content stored once
    /// but present at several paths counts once per path).
    pub bytes: u64,
}

/// A site's platform as the config records it: `os`, `architecture` and an optional `variant`
/// (`linux/arm64/v8` is `os` linux, `architecture` arm64, `variant` v8, as in the OCI image spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `os`.
    pub os: String,
    /// `architecture`.
    pub architecture: String,
    /// `variant`, if any.
    pub variant: Option<String>,
}

impl std::str::FromStr for Platform {
    type Err = Error;
    /// `OS/ARCH` or `OS/ARCH/VARIANT`, each part 1 to 32 of `[a-z0-9_]`.
    fn from_str(s: &str) -> Result<Platform, Error> {
        let mut parts = s.split('/');
        let (os, arch, variant) = (parts.next(), parts.next(), parts.next());
        let (Some(os), Some(arch), None) = (os, arch, parts.next()) else {
            return Err(Error::InvalidRef {
                reference: s.to_string(),
                reason: "a platform is OS/ARCH or OS/ARCH/VARIANT (for example linux/arm64/v8)",
            });
        };
        let p = Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: variant.map(str::to_string),
        };
        check_platform(&p.os, &p.architecture, p.variant.as_deref()).map_err(|_| {
            Error::InvalidRef {
                reference: s.to_string(),
                reason: "each part of a platform is 1 to 32 of [a-z0-9_]",
            }
        })?;
        Ok(p)
    }
}

/// The grammar of `os`, `architecture` and `variant` (spec §7): 1 to [`MAX_PLATFORM_FIELD`]
/// characters of `[a-z0-9_]`, as Go's `GOOS`/`GOARCH` values and OCI's variants (`v7`, `v8`)
/// are. Anything else (`arm64/v8` as one architecture, upper case, spaces) is refused, so one
/// platform has one spelling and one bundle id.
pub fn check_platform(os: &str, architecture: &str, variant: Option<&str>) -> Result<(), Error> {
    let ok = |v: &str| {
        !v.is_empty()
            && v.len() <= MAX_PLATFORM_FIELD
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    for (name, v) in [
        ("os", Some(os)),
        ("architecture", Some(architecture)),
        ("variant", variant),
    ] {
        if let Some(v) = v {
            if !ok(v) {
                return Err(Error::corrupt(
                    "image config",
                    format!("{name} {v:?} is not 1 to {MAX_PLATFORM_FIELD} of [a-z0-9_]"),
                ));
            }
        }
    }
    Ok(())
}

/// A JSON object of strings that refuses a repeated key: serde's maps keep the last value of a
/// repeated key, so two readers of one manifest could disagree on what it says.
fn strict_string_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut m: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = m.next_entry::<String, String>()? {
                if out.contains_key(&k) {
                    return Err(serde::de::Error::custom(format!("key {k:?} appears twice")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(V)
}

/// A descriptor as a bundle manifest may carry it: `mediaType`, `digest`, `size`, and
/// annotations (ignored; podman's zstd:chunked adds some). No `urls` (a reader would fetch the
/// blob from elsewhere), `data`, `platform` or `artifactType`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictDescriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, deserialize_with = "strict_string_map")]
    annotations: BTreeMap<String, String>,
}

impl From<StrictDescriptor> for Descriptor {
    fn from(d: StrictDescriptor) -> Descriptor {
        Descriptor {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
            annotations: d.annotations,
        }
    }
}

/// The members a bundle manifest may have. `artifactType` and `subject` are parsed only to be
/// refused with a clear reason; any other member is refused by `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    #[serde(rename = "artifactType")]
    artifact_type: Option<serde::de::IgnoredAny>,
    config: StrictDescriptor,
    layers: Vec<StrictDescriptor>,
    subject: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "strict_string_map")]
    annotations: BTreeMap<String, String>,
}

/// Parse a manifest blob and check that it is a sitebundle manifest this version can read: an
/// OCI image manifest (or the Docker schema 2 form a copy may have been converted to) with the
/// members spec §7 lists and no others, no key given twice, 1 to [`MAX_LAYERS`] layers each in
/// an accepted encoding (layers of one copy may differ: registries re-compress).
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Error> {
    let what = "manifest";
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::corrupt(what, "larger than 4 MiB"));
    }
    let m: StrictManifest =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
    if m.artifact_type.is_some() {
        return Err(Error::corrupt(
            what,
            "has an artifactType: not a sitebundle image manifest",
        ));
    }
    if m.subject.is_some() {
        return Err(Error::corrupt(
            what,
            "has a subject: a bundle manifest refers to no other manifest",
        ));
    }
    let media_type = m.media_type.unwrap_or_default();
    let docker = media_type == MEDIA_DOCKER_MANIFEST;
    if m.schema_version != 2 || !(media_type == MEDIA_MANIFEST || docker) {
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
        // Docker schema 2 has no annotations; the config's label says the format.
        None if docker => {}
        None => {
            return Err(Error::corrupt(
                what,
                "no dev.sitebundle.format annotation: not a sitebundle",
            ))
        }
    }
    let config_type = if docker {
        MEDIA_DOCKER_CONFIG
    } else {
        MEDIA_CONFIG
    };
    if m.config.media_type != config_type {
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
    for (n, l) in m.layers.iter().enumerate() {
        if LayerEncoding::from_media_type(&l.media_type).is_none() {
            return Err(Error::corrupt(
                what,
                format!("layer {n} has unsupported media type {:?}", l.media_type),
            ));
        }
    }
    Ok(Manifest {
        schema_version: m.schema_version,
        media_type,
        config: m.config.into(),
        layers: m.layers.into_iter().map(Descriptor::from).collect(),
        annotations: m.annotations,
    })
}

/// The config as a reader parses it: only the members spec §7 lists.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictConfig {
    architecture: String,
    config: StrictRunConfig,
    os: String,
    rootfs: StrictRootFs,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictRunConfig {
    #[serde(rename = "Labels", deserialize_with = "strict_string_map")]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictRootFs {
    #[serde(rename = "type")]
    kind: String,
    diff_ids: Vec<Digest>,
}

/// A decimal number without sign or leading zeros, as the `files` and `bytes` labels are written.
fn canonical_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

/// Parse a config blob and check it against its manifest. The config is what the bundle id
/// names, so it has exactly one byte form (spec §7): the bytes must equal what
/// [`ImageConfig::to_bytes`] writes for the parsed value (members in order, no whitespace, label
/// keys sorted, nothing else), its labels are exactly the four sitebundle defines, and the
/// platform follows [`check_platform`]. That `files` and `bytes` match the index is checked when
/// the index is read.
pub fn parse_config(manifest: &Manifest, bytes: &[u8]) -> Result<(ImageConfig, Labels), Error> {
    let what = "image config";
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(Error::corrupt(what, "larger than 4 MiB"));
    }
    let s: StrictConfig =
        serde_json::from_slice(bytes).map_err(|e| Error::corrupt(what, e.to_string()))?;
    let c = ImageConfig {
        architecture: s.architecture,
        config: RunConfig {
            labels: s.config.labels,
        },
        os: s.os,
        rootfs: RootFs {
            kind: s.rootfs.kind,
            diff_ids: s.rootfs.diff_ids,
        },
        variant: s.variant,
    };
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
    let labels = &c.config.labels;
    if labels.get(KEY_FORMAT).map(String::as_str) != Some(FORMAT_VERSION) {
        return Err(Error::corrupt(
            what,
            "missing or unsupported dev.sitebundle.format label",
        ));
    }
    if let Some(extra) = labels
        .keys()
        .find(|k| ![KEY_BYTES, KEY_FILES, KEY_FORMAT, KEY_INDEX].contains(&k.as_str()))
    {
        return Err(Error::corrupt(
            what,
            format!("has label {extra:?}, which the format does not define"),
        ));
    }
    let index: Digest = labels
        .get(KEY_INDEX)
        .ok_or_else(|| Error::corrupt(what, "no dev.sitebundle.index label"))?
        .parse()
        .map_err(|_| Error::corrupt(what, "dev.sitebundle.index is not a sha256 digest"))?;
    let number = |key: &str| -> Result<u64, Error> {
        labels
            .get(key)
            .and_then(|v| canonical_decimal(v))
            .ok_or_else(|| {
                Error::corrupt(what, format!("{key} is missing or not a canonical decimal"))
            })
    };
    let files = number(KEY_FILES)?;
    let bytes_label = number(KEY_BYTES)?;
    if files > crate::limits::MAX_ENTRIES {
        return Err(Error::corrupt(
            what,
            format!(
                "declares {files} files; a bundle has at most {} entries",
                crate::limits::MAX_ENTRIES
            ),
        ));
    }
    check_platform(&c.os, &c.architecture, c.variant.as_deref())?;
    if c.to_bytes() != bytes {
        return Err(Error::corrupt(
            what,
            "not in canonical form (members in spec order, no whitespace, sorted labels): \
             one bundle has one config, hence one id",
        ));
    }
    Ok((
        c,
        Labels {
            index,
            files,
            bytes: bytes_label,
        },
    ))
}
