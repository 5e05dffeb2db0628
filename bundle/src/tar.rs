//! Canonical tar: the exact bytes sitebundle writes for each entry, and a strict reader.
//!
//! The writer produces POSIX ustar headers, preceded by a pax extended header (`x`) only when a
//! path or link name does not fit ustar or is not ASCII, or when a size does not fit 11 octal
//! digits. Every numeric field is fixed; uid/gid are 0, user/group names empty, and the mtime is a
//! function of the content (see [`content_mtime`]). The result is one byte form per site, so
//! `diff_id`s (sha256 of the tar) depend on content only. `spec/format.md` ("Layers") has the
//! field-by-field table.
//!
//! The reader accepts exactly the entry types the writer emits (regular, hardlink, symlink,
//! directory, pax extended header) and rejects everything else: GNU long names, global pax
//! headers, devices, fifos, sparse files, bad checksums, non-octal numbers.

use std::io::{self, Read, Write};

use crate::error::Error;

/// Size of a tar block.
pub const BLOCK: usize = 512;
/// mtime of directories and symlinks, and the base of file mtimes: 2000-01-01T00:00:00Z.
pub const EPOCH_BASE: u64 = 946_684_800;
/// Largest size ustar's 11 octal digits can hold; above it a pax `size` record is written.
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;
/// Name under which pax extended headers are written (what GNU tar uses).
const PAX_NAME: &str = "././@PaxHeader";

/// The mtime a file gets in a layer: [`EPOCH_BASE`] plus the first four bytes of its BLAKE3
/// (little endian) shifted right by 4, i.e. a second within about 8.5 years after 2000.
///
/// Why not a constant: nginx derives `ETag` and `Last-Modified` from mtime and size, and a
/// redeploy often rewrites a page without changing its size. A constant mtime would give the new
/// bytes the old ETag, and caches would keep serving the old page. A content-derived mtime keeps
/// the tar canonical and makes ETags change exactly when bytes change.
pub fn content_mtime(hash: &[u8; 32]) -> u64 {
    let v = u32::from_le_bytes([hash[0], hash[1], hash[2], hash[3]]);
    EPOCH_BASE + u64::from(v >> 4)
}

/// Kinds of tar entries the format uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TarKind {
    /// Regular file (`0`).
    File,
    /// Hard link to an earlier entry (`1`).
    HardLink,
    /// Symbolic link (`2`).
    Symlink,
    /// Directory (`5`).
    Dir,
}

impl TarKind {
    fn flag(self) -> u8 {
        match self {
            TarKind::File => b'0',
            TarKind::HardLink => b'1',
            TarKind::Symlink => b'2',
            TarKind::Dir => b'5',
        }
    }
}

/// The header data of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarHeader {
    /// Path inside the site (no trailing slash; the writer adds it for directories).
    pub path: String,
    /// Entry kind.
    pub kind: TarKind,
    /// Permission bits.
    pub mode: u32,
    /// Bytes of content that follow (files only).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Link target (symlinks and hardlinks).
    pub link: String,
}

/// Write `header` (and a pax header before it when needed) to `out`.
pub fn write_header(out: &mut impl Write, h: &TarHeader) -> io::Result<()> {
    let name = if h.kind == TarKind::Dir {
        format!("{}/", h.path)
    } else {
        h.path.clone()
    };
    let needs_pax_path = name.len() > 100 || !name.is_ascii();
    let needs_pax_link = h.link.len() > 100 || !h.link.is_ascii();
    let needs_pax_size = h.size > USTAR_MAX_SIZE;
    if needs_pax_path || needs_pax_link || needs_pax_size {
        // Records in key order: linkpath, path, size.
        let mut records = Vec::new();
        if needs_pax_link {
            records.extend(pax_record("linkpath", h.link.as_bytes()));
        }
        if needs_pax_path {
            records.extend(pax_record("path", name.as_bytes()));
        }
        if needs_pax_size {
            records.extend(pax_record("size", h.size.to_string().as_bytes()));
        }
        let block = ustar_block(
            PAX_NAME.as_bytes(),
            b'x',
            0o644,
            records.len() as u64,
            h.mtime,
            b"",
        );
        out.write_all(&block)?;
        out.write_all(&records)?;
        out.write_all(&[0u8; BLOCK][..padding(records.len() as u64)])?;
    }
    let name_field: &[u8] = if needs_pax_path { b"" } else { name.as_bytes() };
    let link_field: &[u8] = if needs_pax_link {
        b""
    } else {
        h.link.as_bytes()
    };
    let size_field = if needs_pax_size { 0 } else { h.size };
    out.write_all(&ustar_block(
        name_field,
        h.kind.flag(),
        h.mode,
        size_field,
        h.mtime,
        link_field,
    ))
}

/// Zero bytes needed after `len` bytes of content to reach a block boundary.
pub fn padding(len: u64) -> usize {
    ((BLOCK as u64 - len % BLOCK as u64) % BLOCK as u64) as usize
}

/// The end-of-archive marker: two zero blocks.
pub fn write_end(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// One pax record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record in decimal.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    let len = len.to_string().len() + rest;
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn octal(field: &mut [u8], value: u64) {
    // Zero-padded octal digits followed by one NUL.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn ustar_block(
    name: &[u8],
    flag: u8,
    mode: u32,
    size: u64,
    mtime: u64,
    link: &[u8],
) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], u64::from(mode));
    octal(&mut b[108..116], 0);
    octal(&mut b[116..124], 0);
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], mtime);
    b[156] = flag;
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], 0);
    octal(&mut b[337..345], 0);
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
    b
}

/// A strict streaming reader over a tar stream written by [`write_header`].
pub struct TarReader<R> {
    inner: R,
    what: String,
    /// Bytes of the current entry's content not yet consumed (plus padding).
    pending: u64,
    pending_pad: usize,
    done: bool,
    /// The exact bytes of the last header read (pax block, records and padding, ustar block).
    raw: Vec<u8>,
}

impl<R: Read> TarReader<R> {
    /// Read entries from `inner`; `what` names the stream in errors ("layer 3").
    pub fn new(inner: R, what: impl Into<String>) -> Self {
        TarReader {
            inner,
            what: what.into(),
            pending: 0,
            pending_pad: 0,
            done: false,
            raw: Vec::with_capacity(2 * BLOCK),
        }
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::corrupt(self.what.clone(), reason)
    }

    /// The next header, or `None` at the end-of-archive marker. Any content of the previous entry
    /// that was not read is skipped.
    pub fn next_header(&mut self) -> Result<Option<TarHeader>, Error> {
        if self.done {
            return Ok(None);
        }
        self.skip_rest()?;
        self.raw.clear();
        let mut block = [0u8; BLOCK];
        self.read_exact(&mut block)?;
        if block.iter().all(|&b| b == 0) {
            let mut second = [0u8; BLOCK];
            self.read_exact(&mut second)?;
            if second.iter().any(|&b| b != 0) {
                return Err(self.corrupt("a lone zero block inside the archive"));
            }
            self.done = true;
            return Ok(None);
        }
        let mut pax_path = None;
        let mut pax_link = None;
        let mut pax_size = None;
        if block[156] == b'x' {
            let (_, size) = self.parse_block(&block)?;
            if size > 64 * 1024 {
                return Err(self.corrupt("pax header larger than 64 KiB"));
            }
            self.raw.extend_from_slice(&block);
            let mut data = vec![0u8; size as usize];
            self.read_exact(&mut data)?;
            self.raw.extend_from_slice(&data);
            self.read_padding(padding(size))?;
            self.raw.resize(self.raw.len() + padding(size), 0);
            self.parse_pax(&data, &mut pax_path, &mut pax_link, &mut pax_size)?;
            self.read_exact(&mut block)?;
            if block.iter().all(|&b| b == 0) {
                return Err(self.corrupt("pax header not followed by an entry"));
            }
        }
        self.raw.extend_from_slice(&block);
        let (mut header, size) = self.parse_block(&block)?;
        if let Some(p) = pax_path {
            header.path = p;
        }
        if let Some(l) = pax_link {
            header.link = l;
        }
        header.size = pax_size.unwrap_or(size);
        if header.kind == TarKind::Dir {
            header.path = header
                .path
                .strip_suffix('/')
                .ok_or_else(|| {
                    self.corrupt(format!(
                        "directory {:?} without trailing slash",
                        header.path
                    ))
                })?
                .to_string();
        }
        if header.kind != TarKind::File && header.size != 0 {
            return Err(self.corrupt(format!(
                "{} has content but is not a regular file",
                header.path
            )));
        }
        self.pending = header.size;
        self.pending_pad = padding(header.size);
        Ok(Some(header))
    }

    fn parse_pax(
        &self,
        mut data: &[u8],
        path: &mut Option<String>,
        link: &mut Option<String>,
        size: &mut Option<u64>,
    ) -> Result<(), Error> {
        while !data.is_empty() {
            let sp = data
                .iter()
                .position(|&b| b == b' ')
                .ok_or_else(|| self.corrupt("malformed pax record"))?;
            let len: usize = std::str::from_utf8(&data[..sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|&l| l > sp + 2 && l <= data.len())
                .ok_or_else(|| self.corrupt("malformed pax record length"))?;
            let rec = &data[sp + 1..len];
            if rec.last() != Some(&b'\n') {
                return Err(self.corrupt("pax record not terminated by newline"));
            }
            let rec = &rec[..rec.len() - 1];
            let eq = rec
                .iter()
                .position(|&b| b == b'=')
                .ok_or_else(|| self.corrupt("pax record without '='"))?;
            let value = std::str::from_utf8(&rec[eq + 1..])
                .map_err(|_| self.corrupt("pax value not UTF-8"))?
                .to_string();
            match &rec[..eq] {
                b"path" => *path = Some(value),
                b"linkpath" => *link = Some(value),
                b"size" => {
                    *size = Some(
                        value
                            .parse()
                            .map_err(|_| self.corrupt("pax size is not a number"))?,
                    )
                }
                other => {
                    return Err(self.corrupt(format!(
                        "unsupported pax key {:?}",
                        String::from_utf8_lossy(other)
                    )))
                }
            }
            data = &data[len..];
        }
        Ok(())
    }

    fn parse_block(&self, b: &[u8; BLOCK]) -> Result<(TarHeader, u64), Error> {
        let stored = parse_octal(&b[148..156]).ok_or_else(|| self.corrupt("bad checksum field"))?;
        let sum: u64 = b[..148]
            .iter()
            .chain([b' '; 8].iter())
            .chain(b[156..].iter())
            .map(|&x| u64::from(x))
            .sum();
        if stored != sum {
            return Err(self.corrupt("header checksum mismatch"));
        }
        if &b[257..263] != b"ustar\0" {
            return Err(self.corrupt("not a ustar header"));
        }
        let kind = match b[156] {
            b'0' | 0 => TarKind::File,
            b'1' => TarKind::HardLink,
            b'2' => TarKind::Symlink,
            b'5' => TarKind::Dir,
            b'x' => TarKind::File, // the pax header itself: only its size is used
            other => {
                return Err(self.corrupt(format!("unsupported entry type {:?}", other as char)))
            }
        };
        let field = |r: std::ops::Range<usize>| -> Result<String, Error> {
            let raw = &b[r];
            let end = raw.iter().position(|&x| x == 0).unwrap_or(raw.len());
            String::from_utf8(raw[..end].to_vec())
                .map_err(|_| self.corrupt("header name is not UTF-8"))
        };
        let mut path = field(0..100)?;
        let prefix = field(345..500)?;
        if !prefix.is_empty() {
            path = format!("{prefix}/{path}");
        }
        let num = |r: std::ops::Range<usize>, name: &str| {
            parse_octal(&b[r])
                .ok_or_else(|| self.corrupt(format!("bad {name} field in header of {path:?}")))
        };
        let mode = num(100..108, "mode")?;
        let size = num(124..136, "size")?;
        let mtime = num(136..148, "mtime")?;
        let link = field(157..257)?;
        Ok((
            TarHeader {
                path,
                kind,
                mode: (mode & 0o7777) as u32,
                size,
                mtime,
                link,
            },
            size,
        ))
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.corrupt("truncated tar stream")
            } else {
                self.corrupt(format!("read failed: {e}"))
            }
        })
    }

    /// The exact bytes of the last header [`TarReader::next_header`] returned, pax extended
    /// header included: a reader that must accept only one byte form compares them with the
    /// canonical ones (fields it does not parse, such as uid or user names, live only here).
    pub fn raw_header(&self) -> &[u8] {
        &self.raw
    }

    /// Consume `n` bytes of block padding, which must be zero (one byte form per stream).
    fn read_padding(&mut self, n: usize) -> Result<(), Error> {
        let mut pad = [0u8; BLOCK];
        self.read_exact(&mut pad[..n])?;
        if pad[..n].iter().any(|&b| b != 0) {
            return Err(self.corrupt("tar stream is not canonical: non-zero block padding"));
        }
        Ok(())
    }

    fn skip_rest(&mut self) -> Result<(), Error> {
        let n = self.pending;
        if n > 0 {
            let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
                .map_err(|e| self.corrupt(format!("read failed: {e}")))?;
            if copied != n {
                return Err(self.corrupt("truncated tar stream"));
            }
        }
        self.read_padding(self.pending_pad)?;
        self.pending = 0;
        self.pending_pad = 0;
        Ok(())
    }

    /// Read the current entry's content into `out`, exactly its declared size.
    pub fn copy_content(&mut self, out: &mut impl Write) -> Result<u64, Error> {
        let n = self.pending;
        let copied = io::copy(&mut (&mut self.inner).take(n), out)
            .map_err(|e| self.corrupt(format!("read or write failed: {e}")))?;
        if copied != n {
            return Err(self.corrupt("truncated tar stream"));
        }
        self.pending = 0;
        self.read_padding(self.pending_pad)?;
        self.pending_pad = 0;
        Ok(copied)
    }

    /// The rest of the underlying stream after the end-of-archive marker.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    // Leading spaces are tolerated (old writers); digits end at NUL or space.
    let start = field.iter().position(|&b| b != b' ')?;
    let digits: Vec<u8> = field[start..]
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .copied()
        .collect();
    if digits.is_empty() || digits.len() > 21 || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        for n in [0usize, 1, 5, 90, 95, 96, 97, 98, 990, 995, 1000] {
            let v = "x".repeat(n);
            let r = pax_record("path", v.as_bytes());
            let sp = r.iter().position(|&b| b == b' ').expect("space");
            let len: usize = std::str::from_utf8(&r[..sp])
                .expect("utf8")
                .parse()
                .expect("num");
            assert_eq!(len, r.len(), "value length {n}");
        }
    }

    #[test]
    fn headers_round_trip_through_the_reader() {
        let long = format!("{}/page.html", "d".repeat(120));
        let headers = vec![
            TarHeader {
                path: "a".into(),
                kind: TarKind::Dir,
                mode: 0o755,
                size: 0,
                mtime: EPOCH_BASE,
                link: String::new(),
            },
            TarHeader {
                path: "a/café.html".into(),
                kind: TarKind::File,
                mode: 0o644,
                size: 3,
                mtime: EPOCH_BASE + 7,
                link: String::new(),
            },
            TarHeader {
                path: long.clone(),
                kind: TarKind::HardLink,
                mode: 0o644,
                size: 0,
                mtime: EPOCH_BASE + 7,
                link: "a/café.html".into(),
            },
            TarHeader {
                path: "l".into(),
                kind: TarKind::Symlink,
                mode: 0o777,
                size: 0,
                mtime: EPOCH_BASE,
                link: long,
            },
        ];
        let mut buf = Vec::new();
        for h in &headers {
            write_header(&mut buf, h).expect("write");
            if h.size > 0 {
                buf.extend_from_slice(b"abc");
                buf.extend(std::iter::repeat_n(0u8, padding(3)));
            }
        }
        write_end(&mut buf).expect("end");
        let mut r = TarReader::new(&buf[..], "test");
        for h in &headers {
            assert_eq!(&r.next_header().expect("read").expect("entry"), h);
        }
        assert!(r.next_header().expect("end").is_none());
    }

    #[test]
    fn reader_rejects_bad_checksum_and_truncation() {
        let mut buf = Vec::new();
        write_header(
            &mut buf,
            &TarHeader {
                path: "f".into(),
                kind: TarKind::File,
                mode: 0o644,
                size: 10,
                mtime: 0,
                link: String::new(),
            },
        )
        .expect("write");
        let mut bad = buf.clone();
        bad[0] = b'g';
        assert!(TarReader::new(&bad[..], "t").next_header().is_err());
        let mut r = TarReader::new(&buf[..], "t");
        r.next_header().expect("header").expect("entry");
        assert!(r.copy_content(&mut Vec::new()).is_err());
    }
}
