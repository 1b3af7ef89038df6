//! The frame codec: `| len: u32, big-endian | payload |`, at most [`MAX_FRAME`] bytes, and
//! [`encode_response`], which makes every answer fit one frame.

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::message::{ErrorCode, MAX_FRAME, Response};

/// Why reading a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes is larger than the {MAX_FRAME} byte limit")]
    TooLarge(usize),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Read one frame's payload.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Write one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> std::io::Result<()> {
    if payload.len() > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("frame of {} bytes exceeds {MAX_FRAME}", payload.len()),
        ));
    }
    let mut out = Vec::with_capacity(4 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    w.write_all(&out).await?;
    w.flush().await
}

/// Serialize and write a message.
pub async fn send<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    write_frame(w, &bytes).await
}

/// Most bytes of a client's own text an error message quotes back (a type name, a value).
pub const MAX_ECHO: usize = 256;
/// Most bytes of an error message that is cut to fit a frame. JSON escapes a byte into at most
/// six (`\u0001`), so a message this long always fits, with room for the envelope.
const MAX_FITTED_MESSAGE: usize = MAX_FRAME / 8;

/// `s` cut to at most `max` bytes on a character boundary, with "…" appended when cut.
pub fn clip(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// A response as one frame's payload, always within [`MAX_FRAME`]: an error whose message is
/// too long gets the message cut; any other answer that does not fit becomes a short
/// `internal` error saying so. Never fails, so a peer always gets an answer.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let too_large = match serde_json::to_vec(resp) {
        Ok(b) if b.len() <= MAX_FRAME => return b,
        Ok(b) => b.len(),
        Err(e) => {
            return fallback(&Response::error(
                ErrorCode::Internal,
                format!("the answer could not be encoded: {e}"),
            ));
        }
    };
    let short = match resp {
        Response::Error { code, message } => {
            Response::error(*code, clip(message, MAX_FITTED_MESSAGE))
        }
        _ => Response::error(
            ErrorCode::Internal,
            format!("the answer ({too_large} bytes) does not fit one {MAX_FRAME} byte frame"),
        ),
    };
    fallback(&short)
}

/// `resp` encoded, or a fixed error if even that does not fit.
fn fallback(resp: &Response) -> Vec<u8> {
    match serde_json::to_vec(resp) {
        Ok(b) if b.len() <= MAX_FRAME => b,
        _ => br#"{"type":"error","code":"internal","message":"the answer could not be encoded"}"#
            .to_vec(),
    }
}

/// Write a response; only I/O can fail (see [`encode_response`]).
pub async fn send_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    resp: &Response,
) -> std::io::Result<()> {
    write_frame(w, &encode_response(resp)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Request;
    use crate::report::LogEntry;

    #[test]
    fn clip_cuts_on_a_char_boundary() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        // 'é' is two bytes: a cut inside it goes back to before it.
        assert_eq!(clip("aéb", 2), "a…");
        assert_eq!(clip("aéb", 3), "aé…");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn every_response_encodes_within_one_frame() {
        let decode = |b: &[u8]| serde_json::from_slice::<Response>(b).expect("decodes");
        // Small answers are left alone.
        let small = Response::error(ErrorCode::BadRequest, "no");
        assert_eq!(
            encode_response(&small),
            serde_json::to_vec(&small).expect("ser")
        );
        // An error quoting a huge request (escaping grows it: a control byte is six bytes of
        // JSON) keeps its code and the start of its message.
        for filler in ["\"", "\u{1}", "é", "\u{10348}"] {
            let msg = format!("unknown request type {}", filler.repeat(MAX_FRAME));
            let b = encode_response(&Response::error(ErrorCode::BadRequest, msg));
            assert!(b.len() <= MAX_FRAME, "{filler:?}: {} bytes", b.len());
            match decode(&b) {
                Response::Error { code, message } => {
                    assert_eq!(code, ErrorCode::BadRequest);
                    assert!(
                        message.starts_with("unknown request type "),
                        "{message:.40}"
                    );
                    assert!(message.ends_with('…'));
                }
                other => panic!("{other:?}"),
            }
        }
        // Any other answer too large for a frame becomes a short error rather than nothing.
        let big = Response::Logs {
            service: "web".into(),
            lines: vec![
                LogEntry {
                    timestamp: "2026-01-01T00:00:00Z".into(),
                    level: "INFO".into(),
                    stream: "stdout".into(),
                    message: "x".repeat(1000),
                };
                100
            ],
            dropped: 0,
            omitted: 0,
        };
        let b = encode_response(&big);
        assert!(b.len() < 200, "{}", b.len());
        match decode(&b) {
            Response::Error { code, message } => {
                assert_eq!(code, ErrorCode::Internal);
                assert!(message.contains("does not fit"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn send_response_always_answers() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        let huge = Response::error(ErrorCode::BadRequest, "\"".repeat(MAX_FRAME));
        send_response(&mut a, &huge).await.expect("sent");
        let got = read_frame(&mut b).await.expect("an answer");
        assert!(matches!(
            serde_json::from_slice::<Response>(&got).expect("de"),
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        // `send`, which the control server used before, refuses the same answer outright.
        assert!(send(&mut a, &huge).await.is_err());
    }

    #[tokio::test]
    async fn frames_round_trip_and_limit() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        send(&mut a, &Request::Status).await.expect("send");
        let got = read_frame(&mut b).await.expect("read");
        assert_eq!(
            serde_json::from_slice::<Request>(&got).expect("de"),
            Request::Status
        );
        a.write_all(&((MAX_FRAME as u32 + 1).to_be_bytes()))
            .await
            .expect("w");
        assert!(matches!(
            read_frame(&mut b).await,
            Err(FrameError::TooLarge(_))
        ));
        drop(a);
        assert!(matches!(read_frame(&mut b).await, Err(FrameError::Closed)));
    }
}
