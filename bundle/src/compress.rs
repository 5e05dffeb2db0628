//! Layer compression (zstd or gzip) and where the index travels: a trailer on layer 0's blob that
//! every standard decoder skips.
//!
//! The index is not a file in any layer (it would appear in the served tree) and not a separate
//! blob (registries garbage-collect blobs no manifest names; image configs are read into memory by
//! runtimes, so they must stay small). It rides at the end of layer 0's compressed blob, as
//! zstd:chunked does with its table of contents:
//!
//! - **zstd**: a skippable frame (magic `0x184D2A5E`) whose payload is the zstd-compressed index,
//!   then a 32-byte footer frame (same magic, payload `SBINDEX1` + u64 LE offset + u64 LE length of
//!   the index frame). A decoder skips both; a reader finds the footer in the last 32 bytes.
//! - **gzip**: empty gzip members (each decompresses to nothing) whose FEXTRA field carries the
//!   zstd-compressed index in chunks of at most [`GZIP_EXTRA_CHUNK`] bytes (one subfield `SB`
//!   each), then a 61-byte footer member whose FCOMMENT is `SBINDEX1` + 16 hex digits offset + 16
//!   hex digits length of the index members. Multi-member gzip readers (GNU gzip, Go, flate2) skip
//!   them. Not FCOMMENT for the index: Go's `compress/gzip` (umoci, containerd, Flux) refuses a
//!   comment of 512 bytes or more with "gzip: invalid header", while it reads FEXTRA up to 64 KiB.
//!
//! The uncompressed tar stream, hence the layer's `diff_id`, is the same with or without the
//! trailer and with either compression.

use std::io::{self, Read, Write};

use crate::error::Error;

/// The zstd level used for layers: the same as `zstd -3`, the usual trade-off for registries.
pub const ZSTD_LEVEL: i32 = 3;
/// The zstd level of the index in layer 0's trailer. Level 3, like the layers: the index is
/// mostly hex BLAKE3 digests, which no level compresses much. Measured on the medium corpus
/// (5,965 entries, 775 KB index): level 3 gives 254 KB in 0.01 s, level 19 225 KB in 0.84 s, and
/// the large corpus's index is ten times bigger. The level is not part of the format: readers
/// accept any zstd frame, and the bundle id covers the uncompressed index only.
pub const INDEX_ZSTD_LEVEL: i32 = 3;
/// Magic of the skippable frames sitebundle writes (any of 0x184D2A50..=0x184D2A5F is skippable).
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic at the start of the footer payload.
pub const FOOTER_MAGIC: &[u8; 8] = b"SBINDEX1";
/// Length of the zstd footer frame: 8 bytes of frame header, 24 of payload.
pub const ZSTD_FOOTER_LEN: usize = 32;
/// Length of the gzip footer member.
pub const GZIP_FOOTER_LEN: usize = 61;
/// Most index bytes one gzip index member carries: FEXTRA holds at most 65535 bytes, 4 of which
/// are the subfield header.
pub const GZIP_EXTRA_CHUNK: usize = 65_535 - 4;
/// Subfield id of the index chunks in FEXTRA.
const GZIP_SUBFIELD: [u8; 2] = *b"SB";
/// Upper bound on an uncompressed index (see [`crate::limits`]).
pub const MAX_INDEX_BYTES: u64 = crate::limits::MAX_INDEX_BYTES;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// zstd (the default): `application/vnd.oci.image.layer.v1.tar+zstd`.
    Zstd,
    /// gzip, for older runtimes and Flux: `application/vnd.oci.image.layer.v1.tar+gzip`.
    Gzip,
}

impl Compression {
    /// The OCI layer media type.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Zstd => crate::manifest::MEDIA_LAYER_ZSTD,
            Compression::Gzip => crate::manifest::MEDIA_LAYER_GZIP,
        }
    }

    /// From an OCI layer media type.
    pub fn from_media_type(mt: &str) -> Option<Compression> {
        match mt {
            crate::manifest::MEDIA_LAYER_ZSTD => Some(Compression::Zstd),
            crate::manifest::MEDIA_LAYER_GZIP => Some(Compression::Gzip),
            _ => None,
        }
    }

    /// Wrap `out` in an encoder for this compression.
    pub fn encoder<'a, W: Write + 'a>(self, out: W) -> io::Result<Encoder<'a, W>> {
        Ok(match self {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                // The content checksum lets plain `zstd -d` detect corruption too.
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )),
        })
    }

    /// Like [`Compression::encoder`], but zstd compresses with `ctx` (reset first), so that one
    /// context serves many layers without being allocated again. The output is the same.
    pub fn encoder_with_context<'a, W: Write + 'a>(
        self,
        out: W,
        ctx: &'a mut zstd::zstd_safe::CCtx<'static>,
    ) -> io::Result<Encoder<'a, W>> {
        Ok(match self {
            Compression::Zstd => {
                let mut e = zstd::stream::write::Encoder::with_context(out, ctx);
                e.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))?;
                e.include_checksum(true)?;
                Encoder::Zstd(e)
            }
            Compression::Gzip => self.encoder(out)?,
        })
    }

    /// A decoder over a whole layer blob. Trailing index frames/members decode to nothing.
    pub fn decoder<'a, R: io::BufRead + 'a>(self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(Box::new(LayerDecoder::new(
            LayerEncoding::from(self),
            input,
        )?))
    }

    /// Length of the footer for this compression.
    pub fn footer_len(self) -> usize {
        match self {
            Compression::Zstd => ZSTD_FOOTER_LEN,
            Compression::Gzip => GZIP_FOOTER_LEN,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zstd" => Ok(Compression::Zstd),
            "gzip" => Ok(Compression::Gzip),
            other => Err(format!("unknown compression {other:?}: use zstd or gzip")),
        }
    }
}

/// A layer encoder.
pub enum Encoder<'a, W: Write> {
    /// zstd stream.
    Zstd(zstd::stream::write::Encoder<'a, W>),
    /// gzip stream.
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> Encoder<'_, W> {
    /// Finish the stream and give back the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
        }
    }
}

/// Append the index trailer to a layer-0 blob whose compressed tar stream is `offset` bytes long.
pub fn write_index_trailer(
    out: &mut impl Write,
    compression: Compression,
    offset: u64,
    index: &[u8],
) -> io::Result<()> {
    let packed = zstd::bulk::compress(index, INDEX_ZSTD_LEVEL)?;
    match compression {
        Compression::Zstd => {
            let frame_len = 8 + packed.len() as u64;
            out.write_all(&SKIPPABLE_MAGIC.to_le_bytes())?;
            out.write_all(&(packed.len() as u32).to_le_bytes())?;
            out.write_all(&packed)?;
            out.write_all(&SKIPPABLE_MAGIC.to_le_bytes())?;
            out.write_all(&24u32.to_le_bytes())?;
            out.write_all(FOOTER_MAGIC)?;
            out.write_all(&offset.to_le_bytes())?;
            out.write_all(&frame_len.to_le_bytes())?;
        }
        Compression::Gzip => {
            let mut len = 0usize;
            for chunk in packed.chunks(GZIP_EXTRA_CHUNK) {
                let member = empty_gzip_member_extra(chunk);
                out.write_all(&member)?;
                len += member.len();
            }
            let comment = format!("SBINDEX1{offset:016x}{len:016x}");
            out.write_all(&empty_gzip_member(comment.as_bytes()))?;
        }
    }
    Ok(())
}

/// Fixed part of an empty gzip member: its last 10 bytes (empty final deflate block, CRC 0,
/// size 0).
const GZIP_EMPTY_TAIL: [u8; 10] = [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0];

/// A gzip member with FEXTRA set (one `SB` subfield holding `data`) and no content.
fn empty_gzip_member_extra(data: &[u8]) -> Vec<u8> {
    let mut m = vec![0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff];
    m.extend_from_slice(&((data.len() + 4) as u16).to_le_bytes());
    m.extend_from_slice(&GZIP_SUBFIELD);
    m.extend_from_slice(&(data.len() as u16).to_le_bytes());
    m.extend_from_slice(data);
    m.extend_from_slice(&GZIP_EMPTY_TAIL);
    m
}

/// A gzip member with FCOMMENT set and no content: header, empty final deflate block, CRC 0, size 0.
fn empty_gzip_member(comment: &[u8]) -> Vec<u8> {
    let mut m = vec![0x1f, 0x8b, 8, 0x10, 0, 0, 0, 0, 0, 0xff];
    m.extend_from_slice(comment);
    m.push(0);
    m.extend_from_slice(&[0x03, 0x00]);
    m.extend_from_slice(&[0u8; 8]);
    m
}

/// Parse a footer (the last `footer_len` bytes of layer 0's blob): offset and length of the
/// index frame or member.
pub fn parse_footer(compression: Compression, footer: &[u8]) -> Result<(u64, u64), Error> {
    find_footer(compression, footer)?.ok_or_else(|| {
        Error::corrupt(
            "layer 0 index footer",
            "missing or malformed: not a sitebundle layer 0",
        )
    })
}

/// Look for sitebundle's footer in the last bytes of a layer 0 blob (`tail`, at least
/// [`Compression::footer_len`] bytes; only the last ones are read). `Ok(None)` when there is none:
/// the blob was re-compressed by a tool that does not keep skippable frames or empty members
/// (podman, skopeo), and the index has to be rebuilt from the layers. An error when the footer's
/// magic is there but the rest is not what the spec says.
pub fn find_footer(compression: Compression, tail: &[u8]) -> Result<Option<(u64, u64)>, Error> {
    let bad = |reason: &str| Error::corrupt("layer 0 index footer", reason.to_string());
    let Some(footer) = tail
        .len()
        .checked_sub(compression.footer_len())
        .map(|s| &tail[s..])
    else {
        return Ok(None);
    };
    match compression {
        Compression::Zstd => {
            if footer[..4] != SKIPPABLE_MAGIC.to_le_bytes() || &footer[8..16] != FOOTER_MAGIC {
                return Ok(None);
            }
            if footer[4..8] != 24u32.to_le_bytes() {
                return Err(bad("footer frame length is not 24"));
            }
            let mut o = [0u8; 8];
            o.copy_from_slice(&footer[16..24]);
            let mut l = [0u8; 8];
            l.copy_from_slice(&footer[24..32]);
            Ok(Some((u64::from_le_bytes(o), u64::from_le_bytes(l))))
        }
        Compression::Gzip => {
            if footer[..4] != [0x1f, 0x8b, 8, 0x10] || footer.get(10..18) != Some(FOOTER_MAGIC) {
                return Ok(None);
            }
            let comment = gzip_comment(footer).ok_or_else(|| bad("malformed footer member"))?;
            let rest = std::str::from_utf8(&comment[8..])
                .ok()
                .filter(|r| {
                    r.len() == 32 && r.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                })
                .ok_or_else(|| bad("footer numbers are not 32 lowercase hex digits"))?;
            let o = u64::from_str_radix(&rest[..16], 16).map_err(|_| bad("bad offset"))?;
            let l = u64::from_str_radix(&rest[16..], 16).map_err(|_| bad("bad length"))?;
            Ok(Some((o, l)))
        }
    }
}

/// Decode the index frame/member bytes (as located by the footer) into the raw index bytes.
pub fn decode_index_frame(compression: Compression, frame: &[u8]) -> Result<Vec<u8>, Error> {
    let mut r = IndexFrameReader::new(compression, frame, frame.len() as u64)?;
    let mut out = Vec::new();
    (&mut r)
        .take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::corrupt("layer 0 index frame", format!("does not decompress: {e}")))?;
    if out.len() as u64 > MAX_INDEX_BYTES {
        return Err(Error::corrupt(
            "layer 0 index frame",
            "index larger than the format allows",
        ));
    }
    Ok(out)
}

/// How one layer blob is encoded, from its descriptor's media type. Registries and tools may
/// re-compress layers of a copy (podman, skopeo `--dest-compress-format`), so each layer of a
/// bundle read back may differ; what identifies a layer is its uncompressed `diff_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerEncoding {
    /// zstd: `application/vnd.oci.image.layer.v1.tar+zstd`.
    Zstd,
    /// gzip: `application/vnd.oci.image.layer.v1.tar+gzip` or Docker's
    /// `application/vnd.docker.image.rootfs.diff.tar.gzip`.
    Gzip,
    /// The tar stream itself: `application/vnd.oci.image.layer.v1.tar` or Docker's
    /// `application/vnd.docker.image.rootfs.diff.tar`.
    Tar,
}

impl LayerEncoding {
    /// From a layer descriptor's media type (OCI or Docker schema 2). Foreign, non-distributable
    /// and other layer types are not accepted.
    pub fn from_media_type(mt: &str) -> Option<LayerEncoding> {
        use crate::manifest::*;
        match mt {
            MEDIA_LAYER_ZSTD => Some(LayerEncoding::Zstd),
            MEDIA_LAYER_GZIP | MEDIA_DOCKER_LAYER_GZIP => Some(LayerEncoding::Gzip),
            MEDIA_LAYER_TAR | MEDIA_DOCKER_LAYER_TAR => Some(LayerEncoding::Tar),
            _ => None,
        }
    }

    /// The compression sitebundle writes that this is, if any (a plain tar carries no trailer).
    pub fn compression(self) -> Option<Compression> {
        match self {
            LayerEncoding::Zstd => Some(Compression::Zstd),
            LayerEncoding::Gzip => Some(Compression::Gzip),
            LayerEncoding::Tar => None,
        }
    }

    /// Lowercase name, as `inspect` prints it.
    pub fn name(self) -> &'static str {
        match self {
            LayerEncoding::Zstd => "zstd",
            LayerEncoding::Gzip => "gzip",
            LayerEncoding::Tar => "tar",
        }
    }
}

impl From<Compression> for LayerEncoding {
    fn from(c: Compression) -> Self {
        match c {
            Compression::Zstd => LayerEncoding::Zstd,
            Compression::Gzip => LayerEncoding::Gzip,
        }
    }
}

/// A zstd stream decoder that refuses windows above [`crate::limits::ZSTD_WINDOW_LOG_MAX`]: the
/// window is the one allocation a frame header chooses, and the default limit lets a 20-byte
/// frame ask for 128 MiB.
fn zstd_decoder<R: io::BufRead>(r: R) -> io::Result<zstd::stream::read::Decoder<'static, R>> {
    let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
    d.window_log_max(crate::limits::ZSTD_WINDOW_LOG_MAX)?;
    Ok(d)
}

/// A layer decoder whose underlying reader can be recovered, so the rest of the blob (the index
/// trailer on layer 0) is hashed too.
pub enum LayerDecoder<R: io::BufRead> {
    /// zstd frames (skippable ones decode to nothing).
    Zstd(zstd::stream::read::Decoder<'static, R>),
    /// gzip members (empty ones decode to nothing).
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    /// No compression.
    Tar(R),
}

impl<R: io::BufRead> LayerDecoder<R> {
    /// Start decoding `r` as `enc`.
    pub fn new(enc: LayerEncoding, r: R) -> io::Result<Self> {
        Ok(match enc {
            LayerEncoding::Zstd => LayerDecoder::Zstd(zstd_decoder(r)?),
            LayerEncoding::Gzip => LayerDecoder::Gzip(flate2::bufread::MultiGzDecoder::new(r)),
            LayerEncoding::Tar => LayerDecoder::Tar(r),
        })
    }

    /// The underlying reader, positioned after what the decoder consumed.
    pub fn into_inner(self) -> R {
        match self {
            LayerDecoder::Zstd(d) => d.finish(),
            LayerDecoder::Gzip(d) => d.into_inner(),
            LayerDecoder::Tar(r) => r,
        }
    }
}

impl<R: io::BufRead> Read for LayerDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LayerDecoder::Zstd(d) => d.read(buf),
            LayerDecoder::Gzip(d) => d.read(buf),
            LayerDecoder::Tar(r) => r.read(buf),
        }
    }
}

/// The zstd frame magic (`28 B5 2F FD`): what the index payload must start with.
const ZSTD_FRAME_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Streams the uncompressed index out of the index frame (zstd) or members (gzip) of layer 0,
/// given a reader over exactly those `len` bytes. The payload must be **one** zstd frame and
/// nothing else (spec §7): a second frame, a skippable frame or trailing bytes would give the same
/// index two byte forms inside one layer 0. A frame that declares a content size above
/// [`MAX_INDEX_BYTES`] is refused before anything is decompressed.
pub struct IndexFrameReader<R: Read> {
    dec: Option<zstd::stream::read::Decoder<'static, io::BufReader<Payload<R>>>>,
}

/// The compressed index bytes inside the frame or members.
enum Payload<R: Read> {
    Zstd(io::Take<R>),
    Gzip(GzipExtraReader<R>),
}

impl<R: Read> Read for Payload<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Payload::Zstd(r) => r.read(buf),
            Payload::Gzip(r) => r.read(buf),
        }
    }
}

impl<R: Read> IndexFrameReader<R> {
    /// Start reading the `len` bytes of `r` as the index frame of a `compression` layer 0.
    pub fn new(compression: Compression, mut r: R, len: u64) -> Result<Self, Error> {
        let bad = |reason: String| Error::corrupt("layer 0 index frame", reason);
        if len > crate::limits::MAX_INDEX_FRAME_BYTES {
            return Err(bad(format!(
                "{len} bytes; the format allows at most {}",
                crate::limits::MAX_INDEX_FRAME_BYTES
            )));
        }
        let payload = match compression {
            Compression::Zstd => {
                let mut head = [0u8; 8];
                r.read_exact(&mut head)
                    .map_err(|e| bad(format!("cannot read the frame header: {e}")))?;
                let n = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
                if head[..4] != SKIPPABLE_MAGIC.to_le_bytes() {
                    return Err(bad("not a skippable frame".into()));
                }
                if u64::from(n) + 8 != len {
                    return Err(bad("frame length does not match the footer".into()));
                }
                Payload::Zstd(r.take(u64::from(n)))
            }
            Compression::Gzip => Payload::Gzip(GzipExtraReader::new(r, len)),
        };
        let mut buf = io::BufReader::with_capacity(64 * 1024, payload);
        let head = io::BufRead::fill_buf(&mut buf)
            .map_err(|e| bad(format!("cannot read the index payload: {e}")))?;
        if head.get(..4) != Some(&ZSTD_FRAME_MAGIC[..]) {
            return Err(bad("the index payload is not a zstd frame".into()));
        }
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(head) {
            if size > MAX_INDEX_BYTES {
                return Err(bad(format!(
                    "declares an index of {size} bytes; the format allows at most {MAX_INDEX_BYTES}"
                )));
            }
        }
        let dec = zstd_decoder(buf)
            .map_err(|e| bad(format!("cannot start decompression: {e}")))?
            .single_frame();
        Ok(IndexFrameReader { dec: Some(dec) })
    }
}

impl<R: Read> Read for IndexFrameReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(dec) = self.dec.as_mut() else {
            return Ok(0);
        };
        let n = dec.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // The frame ended: nothing may follow it in the payload.
            let Some(dec) = self.dec.take() else {
                return Ok(0);
            };
            let mut rest = dec.finish();
            let mut probe = [0u8; 1];
            if rest.read(&mut probe)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the index payload holds more than one zstd frame",
                ));
            }
        }
        Ok(n)
    }
}

/// Reads the payloads of the index members of a gzip layer 0 (empty members with one `SB`
/// subfield each, laid out as [`write_index_trailer`] writes them) as one stream, checking each
/// member's fixed bytes as it goes, from a reader over exactly `len` bytes of members.
struct GzipExtraReader<R: Read> {
    inner: R,
    left_in_range: u64,
    left_in_chunk: usize,
}

impl<R: Read> GzipExtraReader<R> {
    fn new(inner: R, len: u64) -> Self {
        GzipExtraReader {
            inner,
            left_in_range: len,
            left_in_chunk: 0,
        }
    }

    fn bad(reason: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("gzip index member: {reason}"),
        )
    }

    fn take_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if (buf.len() as u64) > self.left_in_range {
            return Err(Self::bad("cut short"));
        }
        self.inner.read_exact(buf)?;
        self.left_in_range -= buf.len() as u64;
        Ok(())
    }
}

impl<R: Read> Read for GzipExtraReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left_in_chunk == 0 {
            if self.left_in_range == 0 {
                return Ok(0);
            }
            let mut head = [0u8; 16];
            self.take_exact(&mut head)?;
            if head[..10] != [0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff] {
                return Err(Self::bad("header is not the one the spec gives"));
            }
            let xlen = usize::from(u16::from_le_bytes([head[10], head[11]]));
            let len = usize::from(u16::from_le_bytes([head[14], head[15]]));
            if head[12..14] != GZIP_SUBFIELD || xlen != len + 4 || len == 0 {
                return Err(Self::bad("not one SB subfield"));
            }
            if (len + GZIP_EMPTY_TAIL.len()) as u64 > self.left_in_range {
                return Err(Self::bad("cut short"));
            }
            self.left_in_chunk = len;
        }
        let want = buf.len().min(self.left_in_chunk);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(Self::bad("cut short"));
        }
        self.left_in_chunk -= n;
        self.left_in_range -= n as u64;
        if self.left_in_chunk == 0 {
            let mut tail = [0u8; GZIP_EMPTY_TAIL.len()];
            self.take_exact(&mut tail)?;
            if tail != GZIP_EMPTY_TAIL {
                return Err(Self::bad("member is not empty"));
            }
        }
        Ok(n)
    }
}

/// The FCOMMENT of an empty gzip member laid out as [`empty_gzip_member`] writes it.
fn gzip_comment(m: &[u8]) -> Option<&[u8]> {
    if m.len() < 10 + 1 + 10 || m[..4] != [0x1f, 0x8b, 8, 0x10] {
        return None;
    }
    let tail = &m[m.len() - 10..];
    if tail != [0x03, 0x00, 0, 0, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let body = &m[10..m.len() - 10];
    let (nul, comment) = body.split_last()?;
    if *nul != 0 || comment.contains(&0) {
        return None;
    }
    Some(comment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(c: Compression, payload: &[u8], index: &[u8]) -> Vec<u8> {
        let mut enc = c.encoder(Vec::new()).expect("encoder");
        enc.write_all(payload).expect("write");
        let mut out = enc.finish().expect("finish");
        let off = out.len() as u64;
        write_index_trailer(&mut out, c, off, index).expect("trailer");
        out
    }

    #[test]
    fn trailer_is_invisible_to_decoders_and_found_by_footer() {
        for c in [Compression::Zstd, Compression::Gzip] {
            let payload = b"tar bytes here".repeat(100);
            let index = b"sitebundle-index 1\n".to_vec();
            let b = blob(c, &payload, &index);
            let mut got = Vec::new();
            c.decoder(&b[..])
                .expect("decoder")
                .read_to_end(&mut got)
                .expect("decode");
            assert_eq!(got, payload, "{c:?}");
            let (off, len) = parse_footer(c, &b[b.len() - c.footer_len()..]).expect("footer");
            let frame = &b[off as usize..(off + len) as usize];
            assert_eq!(decode_index_frame(c, frame).expect("index"), index);
        }
    }

    #[test]
    fn large_gzip_index_spans_several_extra_members_and_stays_invisible() {
        // Regression (issue 3): the index used to ride in one FCOMMENT, which Go's gzip reader
        // (umoci, containerd, Flux) refuses from 512 bytes on. Incompressible index bytes force
        // several 64 KiB FEXTRA members.
        let mut x = 1u64;
        let index: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let payload = b"tar".repeat(1000);
        let b = blob(Compression::Gzip, &payload, &index);
        let mut got = Vec::new();
        flate2::read::MultiGzDecoder::new(&b[..])
            .read_to_end(&mut got)
            .expect("decode");
        assert_eq!(got, payload);
        let (off, len) =
            parse_footer(Compression::Gzip, &b[b.len() - GZIP_FOOTER_LEN..]).expect("footer");
        let frame = &b[off as usize..(off + len) as usize];
        assert!(frame.len() > 3 * 65_536, "several members");
        assert_eq!(
            decode_index_frame(Compression::Gzip, frame).expect("index"),
            index
        );
        // No gzip header string (name or comment) of 512 bytes or more anywhere.
        let mut rest = &b[off as usize..];
        while !rest.is_empty() {
            let flags = rest[3];
            assert_eq!(flags & 0x08, 0, "no FNAME");
            if flags & 0x10 != 0 {
                let nul = rest[10..].iter().position(|&c| c == 0).expect("NUL");
                assert!(nul < 512, "comment of {nul} bytes");
                rest = &rest[10 + nul + 1 + 10..];
            } else {
                let xlen = usize::from(u16::from_le_bytes([rest[10], rest[11]]));
                rest = &rest[12 + xlen + 10..];
            }
        }
        // A damaged member is refused, not misread.
        let mut bad = frame.to_vec();
        bad[13] = b'X';
        assert!(decode_index_frame(Compression::Gzip, &bad).is_err());
        assert!(decode_index_frame(Compression::Gzip, &frame[..frame.len() - 1]).is_err());
    }
}
