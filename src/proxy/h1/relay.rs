//! Relaying a response body (fixed length, chunked, until close) and the `Chunked` decoder.

use std::io;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::BODY_CHUNK;
use super::buf::{give_buf, take_buf, write_timed};

/// Copy exactly `n` bytes from `from` to `to`.
pub(super) async fn relay_fixed(
    from: &mut TcpStream,
    to: &mut TcpStream,
    mut n: u64,
    idle: Duration,
) -> io::Result<()> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        while n > 0 {
            let want = (n.min(b.len() as u64)) as usize;
            let got = read_timed(from, &mut b[..want], idle).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "body ended early",
                ));
            }
            write_timed(to, &b[..got], idle).await?;
            n -= got as u64;
        }
        Ok(())
    }
    .await;
    give_buf(b);
    r
}

/// Relay a chunked body verbatim until its end; `Ok(true)` when bytes followed it.
pub(super) async fn relay_chunked(
    from: &mut TcpStream,
    to: &mut TcpStream,
    mut c: Chunked,
    idle: Duration,
) -> io::Result<bool> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        loop {
            let got = read_timed(from, &mut b, idle).await?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "chunked body ended early",
                ));
            }
            let (used, end) = c.feed(&b[..got]).map_err(io::Error::other)?;
            write_timed(to, &b[..used], idle).await?;
            if end {
                return Ok(used < got);
            }
        }
    }
    .await;
    give_buf(b);
    r
}

pub(super) async fn relay_to_eof(
    from: &mut TcpStream,
    to: &mut TcpStream,
    idle: Duration,
) -> io::Result<()> {
    let mut b = take_buf(BODY_CHUNK);
    let r = async {
        loop {
            let got = read_timed(from, &mut b, idle).await?;
            if got == 0 {
                return Ok(());
            }
            write_timed(to, &b[..got], idle).await?;
        }
    }
    .await;
    give_buf(b);
    r
}

async fn read_timed(from: &mut TcpStream, b: &mut [u8], idle: Duration) -> io::Result<usize> {
    match tokio::time::timeout(idle, from.read(b)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "body stalled")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum ChunkState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLineLf,
    EndLf,
    Done,
}

/// Finds where a chunked body ends, without changing it.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: ChunkState,
    size: u64,
    digits: u32,
    /// Bytes of extensions or trailers seen (bounded).
    meta: usize,
}

const MAX_CHUNK_META: usize = 16 * 1024;

impl Chunked {
    /// Consume `data`; returns (bytes that belong to the body, whether the body ended there).
    pub(super) fn feed(&mut self, data: &[u8]) -> Result<(usize, bool), &'static str> {
        let mut i = 0;
        while i < data.len() {
            if self.state == ChunkState::Data {
                let take = (self.size.min((data.len() - i) as u64)) as usize;
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = ChunkState::DataCr;
                }
                continue;
            }
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (ChunkState::Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    let d = (b as char).to_digit(16).ok_or("bad chunk size")? as u64;
                    if self.digits >= 15 {
                        return Err("chunk size too large");
                    }
                    self.size = self.size * 16 + d;
                    self.digits += 1;
                    ChunkState::Size
                }
                (ChunkState::Size, b';' | b' ' | b'\t') if self.digits > 0 => ChunkState::Ext,
                (ChunkState::Size, b'\r') if self.digits > 0 => ChunkState::SizeLf,
                (ChunkState::Size, _) => return Err("bad chunk size"),
                (ChunkState::Ext, b'\r') => ChunkState::SizeLf,
                (ChunkState::Ext, b'\n') => return Err("bare LF in chunk extension"),
                (ChunkState::Ext, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("chunk extensions too long");
                    }
                    ChunkState::Ext
                }
                (ChunkState::SizeLf, b'\n') => {
                    self.digits = 0;
                    if self.size == 0 {
                        ChunkState::TrailerStart
                    } else {
                        ChunkState::Data
                    }
                }
                (ChunkState::DataCr, b'\r') => ChunkState::DataLf,
                (ChunkState::DataLf, b'\n') => ChunkState::Size,
                (ChunkState::TrailerStart, b'\r') => ChunkState::EndLf,
                (ChunkState::TrailerStart | ChunkState::TrailerLine, b'\n') => {
                    return Err("bare LF in trailer");
                }
                (ChunkState::TrailerLine, b'\r') => ChunkState::TrailerLineLf,
                (ChunkState::TrailerStart | ChunkState::TrailerLine, _) => {
                    self.meta += 1;
                    if self.meta > MAX_CHUNK_META {
                        return Err("trailers too long");
                    }
                    ChunkState::TrailerLine
                }
                (ChunkState::TrailerLineLf, b'\n') => ChunkState::TrailerStart,
                (ChunkState::EndLf, b'\n') => {
                    self.state = ChunkState::Done;
                    return Ok((i, true));
                }
                _ => return Err("malformed chunked body"),
            };
        }
        Ok((i, self.state == ChunkState::Done))
    }
}
