//! A sha256 whose state between 64-byte blocks can be saved and resumed: what lets a rebuild
//! skip the unchanged start of a layer.
//!
//! A layer's `diff_id` is the sha256 of its whole tar stream, and sha256 runs front to back, so
//! a rebuild that changes one page of a layer used to decompress every frame of that layer just
//! to hash it. Every frame boundary falls on a multiple of 512 bytes (tar blocks), hence of 64,
//! where sha256's state is exactly eight words and a length. The frame cache records that state
//! before and after each frame ([`crate::frames`]): while a rebuild's runs are the same frames
//! from the start of an earlier blob, its hash state after them is the recorded one, and their
//! compressed bytes are copied without being decompressed.
//!
//! The blocks go through `sha2::compress256` (SHA-NI where the CPU has it, as `sha2::Sha256`
//! does); a test checks the result against `sha2::Sha256` for every split of random input.

use std::io::{self, Write};

use sha2::digest::generic_array::GenericArray;

use crate::digest::Digest;

/// sha256's initial state (FIPS 180-4 §5.3.3).
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Blocks handed to the compression function per call.
const BATCH: usize = 64;

/// The state of a sha256 at a block boundary: the eight words and the bytes hashed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Midstate {
    /// The eight state words.
    pub words: [u32; 8],
    /// Bytes hashed (a multiple of 64).
    pub len: u64,
}

impl Midstate {
    /// The state before any byte.
    pub const START: Midstate = Midstate { words: H0, len: 0 };

    /// 32 bytes (the words, big-endian), as stored in a frame table.
    pub fn word_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(self.words) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The state from [`Midstate::word_bytes`] and a length; `None` unless the length is a
    /// multiple of 64.
    pub fn from_parts(bytes: &[u8; 32], len: u64) -> Option<Midstate> {
        if !len.is_multiple_of(64) {
            return None;
        }
        let mut words = [0u32; 8];
        for (w, b) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        Some(Midstate { words, len })
    }
}

/// A streaming sha256 (a `Write` sink) that can report and resume its state at block
/// boundaries.
#[derive(Clone)]
pub struct Sha256Resumable {
    words: [u32; 8],
    len: u64,
    buf: [u8; 64],
    fill: usize,
}

impl Default for Sha256Resumable {
    fn default() -> Self {
        Sha256Resumable::resume(Midstate::START)
    }
}

impl Sha256Resumable {
    /// A hash that continues from `m`.
    pub fn resume(m: Midstate) -> Sha256Resumable {
        Sha256Resumable {
            words: m.words,
            len: m.len,
            buf: [0; 64],
            fill: 0,
        }
    }

    /// The state, if the bytes so far end on a block boundary.
    pub fn midstate(&self) -> Option<Midstate> {
        (self.fill == 0).then_some(Midstate {
            words: self.words,
            len: self.len,
        })
    }

    fn blocks(&mut self, data: &[u8]) {
        let mut batch = [GenericArray::<u8, sha2::digest::consts::U64>::default(); BATCH];
        for chunk in data.chunks(64 * BATCH) {
            let n = chunk.len() / 64;
            for (b, c) in batch.iter_mut().zip(chunk.chunks_exact(64)) {
                b.copy_from_slice(c);
            }
            sha2::compress256(&mut self.words, &batch[..n]);
        }
    }

    /// Hash `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.fill > 0 {
            let take = (64 - self.fill).min(data.len());
            self.buf[self.fill..self.fill + take].copy_from_slice(&data[..take]);
            self.fill += take;
            data = &data[take..];
            if self.fill < 64 {
                return;
            }
            let block = self.buf;
            self.blocks(&block);
            self.fill = 0;
        }
        let whole = data.len() / 64 * 64;
        self.blocks(&data[..whole]);
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.fill = rest.len();
    }

    /// The digest (FIPS 180-4 §5.1.1 padding).
    pub fn finish(mut self) -> Digest {
        let bits = self.len.wrapping_mul(8);
        let mut pad = [0u8; 128];
        pad[0] = 0x80;
        let total = if self.fill < 56 { 64 } else { 128 };
        let n = total - self.fill;
        pad[n - 8..n].copy_from_slice(&bits.to_be_bytes());
        let len = self.len;
        self.update(&pad[..n]);
        Digest::from_bytes(
            Midstate {
                words: self.words,
                len,
            }
            .word_bytes(),
        )
    }
}

impl Write for Sha256Resumable {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any input cut into any pieces, with the state saved and resumed at every block
        /// boundary it passes: the same digest as `sha2::Sha256` over the whole.
        #[test]
        fn matches_sha2_with_resumes(data in prop::collection::vec(any::<u8>(), 0..9000),
                                     cuts in prop::collection::vec(0usize..9000, 0..12)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut h = Sha256Resumable::default();
            let mut at = 0;
            for c in cuts.into_iter().chain([data.len()]) {
                h.update(&data[at..c]);
                at = c;
                if let Some(m) = h.midstate() {
                    let m = Midstate::from_parts(&m.word_bytes(), m.len).expect("aligned");
                    h = Sha256Resumable::resume(m);
                }
            }
            prop_assert_eq!(h.finish(), Digest::of(&data));
        }
    }

    #[test]
    fn known_answers() {
        assert_eq!(
            Sha256Resumable::default().finish().to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Sha256Resumable::default();
        h.update(b"abc");
        assert_eq!(
            h.finish().to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Midstate::from_parts(&[0; 32], 63), None);
    }
}
