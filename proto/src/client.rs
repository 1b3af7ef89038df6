//! A control-socket client: connect, handshake, send requests. Used by kinfractl and tests.

use std::path::{Path, PathBuf};

use tokio::net::UnixStream;

use crate::frame::{self, FrameError};
use crate::message::{PROTOCOL_VERSION, Request, Response};

/// Why talking to the daemon failed (each maps to a kinfractl exit code).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach kinfrad at {path}: {reason}")]
    Unreachable { path: PathBuf, reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon answered with an error response.
    #[error("{message}")]
    Refused { code: String, message: String },
}

/// A connected, greeted control connection.
pub struct Client {
    stream: UnixStream,
    pub server: String,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| ClientError::Unreachable {
                path: path.to_path_buf(),
                reason: match e.kind() {
                    std::io::ErrorKind::NotFound => "no such socket".to_string(),
                    std::io::ErrorKind::ConnectionRefused => {
                        "connection refused (stale socket; kinfrad is not running)".to_string()
                    }
                    std::io::ErrorKind::PermissionDenied => {
                        "permission denied (run as root or as a member of group 'kinfra')"
                            .to_string()
                    }
                    _ => e.to_string(),
                },
            })?;
        let mut c = Client {
            stream,
            server: String::new(),
        };
        let hello = Request::Hello {
            protocol: PROTOCOL_VERSION,
            client: format!("kinfractl {}", env!("CARGO_PKG_VERSION")),
        };
        match c.call(&hello).await? {
            Response::Hello { server, .. } => {
                c.server = server;
                Ok(c)
            }
            other => Err(ClientError::Protocol(format!(
                "unexpected answer to hello: {other:?}"
            ))),
        }
    }

    /// Send one request and read its response; an error response becomes `Refused`.
    pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let sent = frame::send(&mut self.stream, req).await;
        let frame = frame::read_frame(&mut self.stream).await;
        // kinfrad may refuse a peer (credentials) and close before our request is written:
        // its answer is still readable and says why, which beats "broken pipe".
        let frame = match (sent, frame) {
            (_, Ok(f)) => f,
            (Err(e), Err(_)) => return Err(ClientError::Protocol(format!("send failed: {e}"))),
            (Ok(()), Err(FrameError::Closed)) => {
                return Err(ClientError::Protocol(
                    "kinfrad closed the connection".into(),
                ));
            }
            (Ok(()), Err(other)) => return Err(ClientError::Protocol(other.to_string())),
        };
        let resp: Response = serde_json::from_slice(&frame)
            .map_err(|e| ClientError::Protocol(format!("unreadable response: {e}")))?;
        match resp {
            Response::Error { code, message } => Err(ClientError::Refused {
                code: code.as_str().to_string(),
                message,
            }),
            r => Ok(r),
        }
    }
}
