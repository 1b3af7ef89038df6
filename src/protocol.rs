//! The control protocol between kinfractl (or any script) and kinfrad, over a Unix stream socket.
//!
//! ```text
//! | len: u32, big-endian | JSON payload, `len` bytes (at most MAX_FRAME) |
//! ```
//!
//! Every message is one JSON object tagged by `"type"` (snake_case). The client's first request
//! must be [`Request::Hello`] carrying [`PROTOCOL_VERSION`]; the daemon answers
//! [`Response::Hello`] or an `unsupported_version` error and closes. After that, each request gets
//! exactly one response, in order. Errors are data: [`Response::Error`] with a stable `code`.
//! A malformed, oversized or unknown message gets an error; an oversized frame also closes the
//! connection (its bytes cannot be skipped safely). The daemon is never disturbed by either.
//! Every answer fits one frame ([`encode_response`]): an error that quotes the request is cut,
//! and an answer too large for a frame becomes an `internal` error saying so.
//!
//! Evolution rules: variants and fields are only added, never renamed or repurposed; new fields
//! are optional, and a peer ignores fields it does not know. A change an older peer could
//! misread bumps [`PROTOCOL_VERSION`].

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::maintenance::StatusView;

/// Version of this protocol. Bumped only for incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 * 1024;

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// First message on every connection. → `Hello` | `Error{unsupported_version}`
    Hello {
        protocol: u32,
        client: String,
    },
    /// The daemon's state. → `Status`
    Status,
    /// Enter maintenance (or change it when already in). → `Maintenance` | `Error`
    MaintEnter {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_secs: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
    },
    /// Change what the maintenance page shows; maintenance must be active.
    /// → `Maintenance` | `Error{not_in_maintenance}`
    MaintUpdate {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        issue: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        countdown_secs: Option<i64>,
    },
    /// Leave maintenance. → `Maintenance` (inactive; also when it was not active)
    MaintExit,
    /// Reload configuration and templates. → `Reloaded` | `Error{reload_failed}`
    Reload,
    /// The admin token for the HTTP API. → `Token`
    Token,
    /// Every service's state. → `Services`
    Ps,
    /// Start, stop or restart a service kinfrad runs. → `ServiceAction` | `Error`
    ServiceStart {
        service: String,
    },
    ServiceStop {
        service: String,
    },
    ServiceRestart {
        service: String,
    },
    /// The last `lines` captured lines of a service kinfrad runs. → `Logs` | `Error`
    Logs {
        service: String,
        lines: u32,
    },
    /// Set what a service's loading page says while it comes up (a deploy script's progress);
    /// `clear` drops it. → `ServiceAction` | `Error`
    ServiceProgress {
        service: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepSpec>,
        #[serde(default)]
        clear: bool,
    },
}

/// A progress step: text and pending | active | completed | failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSpec {
    pub text: String,
    pub status: String,
}

/// One captured line of a service's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// ERROR | WARN | INFO | DEBUG
    pub level: String,
    /// stdout | stderr
    pub stream: String,
    pub message: String,
}

/// A response from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol: u32,
        server: String,
    },
    Status(StatusReport),
    Maintenance(StatusView),
    Reloaded {
        config: String,
    },
    Token {
        token: String,
    },
    Services {
        services: Vec<ServiceReport>,
    },
    ServiceAction {
        service: String,
        action: String,
    },
    Logs {
        service: String,
        lines: Vec<LogEntry>,
        dropped: u64,
        /// Older lines asked for but left out so the answer fits one frame.
        #[serde(default)]
        omitted: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Stable error codes; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object this protocol knows.
    BadRequest,
    /// The frame was larger than [`MAX_FRAME`].
    FrameTooLarge,
    /// The first request was not `hello`.
    HandshakeRequired,
    UnsupportedVersion,
    /// A field's value was refused; the message names the field.
    InvalidArgument,
    NotInMaintenance,
    ReloadFailed,
    /// The change could not be persisted, so it was not made.
    StateWriteFailed,
    PermissionDenied,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::HandshakeRequired => "handshake_required",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::NotInMaintenance => "not_in_maintenance",
            ErrorCode::ReloadFailed => "reload_failed",
            ErrorCode::StateWriteFailed => "state_write_failed",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::Internal => "internal",
        }
    }
}

/// `kinfractl status`: the daemon and its maintenance state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub config: String,
    pub listen: Vec<String>,
    pub control_socket: String,
    pub state_file: String,
    /// Problems an operator must know about (corrupt state kept aside, failed reload, …).
    #[serde(default)]
    pub problems: Vec<String>,
    pub open_connections: u64,
    pub maintenance: StatusView,
    /// Configured services, in config order (absent from daemons older than the proxy).
    #[serde(default)]
    pub services: Vec<ServiceReport>,
}

/// One service as `kinfractl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub name: String,
    pub url: String,
    pub routes: Vec<String>,
    /// starting | running | unhealthy | down | circuit_open
    pub state: String,
    pub health: String,
    /// closed | open | half-open
    pub circuit_state: String,
    pub circuit_failures: u64,
    /// Seconds since the circuit opened, while it is open or half-open.
    #[serde(default)]
    pub circuit_opened_secs_ago: Option<u64>,
    pub requests: u64,
    pub failures: u64,
    /// The last error seen (probe or traffic), "" when none.
    #[serde(default)]
    pub last_error: String,
    pub in_maintenance: bool,
    /// Run by kinfrad (`command`), with its process facts below.
    #[serde(default)]
    pub supervised: bool,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Since the process started (supervised) or the service became healthy.
    #[serde(default)]
    pub uptime_secs: Option<u64>,
    #[serde(default)]
    pub restarts: u32,
    /// "Process exited with code 1", "" when none.
    #[serde(default)]
    pub last_exit: String,
}

impl Response {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            message: message.into(),
        }
    }
}

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

    #[test]
    fn wire_shapes_are_stable() {
        let r = Request::MaintEnter {
            url: Some("http://127.0.0.1:8081/".into()),
            message: None,
            issue: None,
            countdown_secs: Some(600),
            target: None,
        };
        assert_eq!(
            serde_json::to_string(&r).expect("ser"),
            r#"{"type":"maint_enter","url":"http://127.0.0.1:8081/","countdown_secs":600}"#
        );
        let h: Request =
            serde_json::from_str(r#"{"type":"hello","protocol":1,"client":"x"}"#).expect("de");
        assert_eq!(
            h,
            Request::Hello {
                protocol: 1,
                client: "x".into()
            }
        );
        let e = Response::error(ErrorCode::NotInMaintenance, "no");
        assert_eq!(
            serde_json::to_string(&e).expect("ser"),
            r#"{"type":"error","code":"not_in_maintenance","message":"no"}"#
        );
    }

    #[test]
    fn unknown_and_malformed_are_rejected() {
        assert!(serde_json::from_str::<Request>(r#"{"type":"format_disk"}"#).is_err());
        // Unknown fields are ignored: fields are only ever added, as optional ones.
        assert!(serde_json::from_str::<Request>(r#"{"type":"status","extra":1}"#).is_ok());
        assert!(
            serde_json::from_str::<Request>(r#"{"type":"maint_enter","countdown_secs":"ten"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Request>("[1,2]").is_err());
    }

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
