//! A deterministic byte pattern for large bodies, checked byte for byte on the other side: the
//! fake upstream streams it and checks uploads against it, clients check downloads, so a lost,
//! repeated, reordered or changed byte anywhere in hundreds of MiB is caught without keeping them.

use std::io;
use std::sync::OnceLock;

pub const BLOCK: usize = 1 << 20;

/// 1 MiB of xorshift noise; block `k` of the pattern is this block with `k` in its first 8 bytes,
/// so lost, repeated or reordered blocks are caught too.
pub fn pattern_block() -> &'static [u8] {
    static B: OnceLock<Vec<u8>> = OnceLock::new();
    B.get_or_init(|| {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut v = Vec::with_capacity(BLOCK);
        while v.len() < BLOCK {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    })
}

/// Call `f` with the first `n` bytes of the pattern, a block at a time.
pub fn for_pattern(n: u64, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = pattern_block().to_vec();
    let mut left = n;
    let mut k: u64 = 0;
    while left > 0 {
        buf[..8].copy_from_slice(&k.to_le_bytes());
        let take = left.min(BLOCK as u64) as usize;
        f(&buf[..take])?;
        left -= take as u64;
        k += 1;
    }
    Ok(())
}

/// Counts bytes and checks each one against the pattern at its offset.
#[derive(Debug, Default, Clone, Copy)]
pub struct PatternCheck {
    pub len: u64,
    pub first_bad: Option<u64>,
}

impl PatternCheck {
    pub fn update(&mut self, mut data: &[u8]) {
        let block = pattern_block();
        while !data.is_empty() {
            let k = self.len / BLOCK as u64;
            let i = (self.len % BLOCK as u64) as usize;
            let n = data.len().min(BLOCK - i);
            let (piece, rest) = data.split_at(n);
            if self.first_bad.is_none() {
                let hdr = k.to_le_bytes();
                let h_end = (i + n).min(8).max(i);
                for p in i..h_end {
                    if piece[p - i] != hdr[p] {
                        self.first_bad = Some(self.len + (p - i) as u64);
                        break;
                    }
                }
                if self.first_bad.is_none() && piece[h_end - i..] != block[h_end..i + n] {
                    let off = piece[h_end - i..]
                        .iter()
                        .zip(&block[h_end..i + n])
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    self.first_bad = Some(self.len + (h_end - i + off) as u64);
                }
            }
            self.len += n as u64;
            data = rest;
        }
    }

    /// Exactly the first `n` bytes of the pattern?
    pub fn is_pattern(&self, n: u64) -> bool {
        self.len == n && self.first_bad.is_none()
    }
}
