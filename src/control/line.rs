//! The line protocol: plain-text commands, one a line, for scripts written against the older Go
//! service registry (`MAINT_ENTER|session|target|url`, `MAINT_EXIT|session|target`,
//! `DRAIN_START|session|secs`, `CIRCUIT_STATUS|session|route`), so they keep working unchanged.
//!
//! It is spoken on the control socket itself: a control frame starts with its length as a
//! big-endian u32 of at most 64 KiB, so its first byte is 0, while a line starts with a letter.
//! [`first_byte`] peeks at that byte without consuming it, and `control::handle` picks the
//! protocol after the same peer-credential check as for frames.
//!
//! Each command is one small function mapping to the `App` operation the control protocol's
//! request of the same meaning calls ([`maint_enter`] → `App::enter`, [`maint_exit`] →
//! `App::exit`, [`circuit_status`] → `App::service_reports`, [`drain_start`] → drain, once the
//! daemon has one). Parsing ([`parse`]) and framing ([`cut_line`]) are pure, so every reply to a
//! bad line is unit-tested byte for byte; README.md ("Line protocol") lists them all.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Interest};
use tokio::net::UnixStream;

use crate::app::{App, MaintRequest, OpError};
use crate::model::maintenance::Target;

/// Longest line accepted, in bytes, without its `\n` or `\r\n` ending.
pub const MAX_LINE: usize = 4096;
/// Longest session id, in bytes.
pub const MAX_SESSION: usize = 128;
/// Longest drain, in seconds (a day).
pub const MAX_DRAIN_SECS: u64 = 86_400;
/// Most bytes of the client's own text an error quotes back.
const MAX_ECHO: usize = 64;
/// Most bytes of an error message (longer ones are cut, with "…").
const MAX_MESSAGE: usize = 512;

/// The commands, in the order error messages list them.
pub const COMMANDS: [&str; 4] = ["MAINT_ENTER", "MAINT_EXIT", "DRAIN_START", "CIRCUIT_STATUS"];

// The detection holds while every frame length fits in three bytes (its first byte is 0).
const _: () = assert!(crate::protocol::MAX_FRAME < 1 << 24);

/// Does a connection whose first byte is `b` speak the line protocol (rather than frames)?
pub fn starts_line(b: u8) -> bool {
    b.is_ascii_alphabetic()
}

/// One parsed line. Texts are checked; `target` is normalized (`ALL`, or ids joined by `,`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    MaintEnter {
        session: String,
        target: String,
        url: String,
    },
    MaintExit {
        session: String,
        target: String,
    },
    DrainStart {
        session: String,
        secs: u64,
    },
    CircuitStatus {
        session: String,
        route: String,
    },
}

/// The answer to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ACK` then `MAINT_OK|<target>`.
    MaintOk(String),
    /// `DRAIN_OK|<time the drain ends, RFC 3339 UTC>` (one line, as the older registry sent).
    DrainOk(String),
    /// One line of `key=value` pairs (CIRCUIT_STATUS).
    Status(String),
    /// `ERR|<code>|<message>`.
    Err { code: &'static str, message: String },
}

impl Reply {
    pub fn err(code: &'static str, message: impl Into<String>) -> Reply {
        Reply::Err {
            code,
            message: message.into(),
        }
    }

    /// The bytes sent: every line ends with `\n`, and none holds another line break.
    pub fn encode(&self) -> Vec<u8> {
        let s = match self {
            Reply::MaintOk(t) => format!("ACK\nMAINT_OK|{}\n", one_line(t)),
            Reply::DrainOk(t) => format!("ACK\nDRAIN_OK|{}\n", one_line(t)),
            Reply::Status(s) => format!("{}\n", one_line(s)),
            Reply::Err { code, message } => {
                let m = one_line(message);
                format!("ERR|{code}|{}\n", crate::protocol::clip(&m, MAX_MESSAGE))
            }
        };
        s.into_bytes()
    }
}

impl From<OpError> for Reply {
    fn from(e: OpError) -> Reply {
        Reply::err(e.code.as_str(), e.message)
    }
}

/// `s` with every control character (line breaks included) replaced by a space.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The client's text `s`, cut and quoted for an error message.
fn quote(s: &str) -> String {
    format!("{:?}", crate::protocol::clip(s, MAX_ECHO))
}

/// What the reader found in its buffer: a line (without `\n`; a `\r` before it is still there)
/// or the start of one longer than [`MAX_LINE`].
#[derive(Debug, PartialEq, Eq)]
pub enum Cut<'a> {
    Line(&'a [u8]),
    TooLong,
}

/// How many bytes the reader takes at most while looking for the end of one line: the longest
/// line, a `\r`, the `\n`.
pub const READ_LIMIT: usize = MAX_LINE + 2;

/// Frame what one bounded `read_until(b'\n')` returned (`buf` is never empty): a line ends at
/// `\n`, or at the end of input; a `\r` before the `\n` is allowed.
pub fn cut_line(buf: &[u8]) -> Cut<'_> {
    let line = buf.strip_suffix(b"\n").unwrap_or(buf);
    let content = line.strip_suffix(b"\r").unwrap_or(line);
    if content.len() > MAX_LINE || (buf.len() >= READ_LIMIT && !buf.ends_with(b"\n")) {
        Cut::TooLong
    } else {
        Cut::Line(line)
    }
}

/// Parse one line (without its `\n`; one trailing `\r` is dropped). An empty line is `Ok(None)`:
/// it gets no answer.
pub fn parse(line: &[u8]) -> Result<Option<Command>, Reply> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Ok(None);
    }
    let Ok(line) = std::str::from_utf8(line) else {
        return Err(Reply::err("bad_line", "line is not valid UTF-8"));
    };
    if line.chars().any(char::is_control) {
        return Err(Reply::err(
            "bad_line",
            "line holds a control character (tab, CR, NUL, ...)",
        ));
    }
    let fields: Vec<&str> = line.split('|').collect();
    let name = fields[0];
    let usage = match name {
        "MAINT_ENTER" => "MAINT_ENTER|session|target|url",
        "MAINT_EXIT" => "MAINT_EXIT|session|target",
        "DRAIN_START" => "DRAIN_START|session|secs",
        "CIRCUIT_STATUS" => "CIRCUIT_STATUS|session|route",
        _ => {
            return Err(Reply::err(
                "unknown_command",
                format!(
                    "unknown command {}; known: {}",
                    quote(name),
                    COMMANDS.join(", ")
                ),
            ));
        }
    };
    let want = usage.split('|').count();
    if fields.len() != want {
        return Err(Reply::err(
            "wrong_field_count",
            format!("{name} takes {want} fields ({usage}), got {}", fields.len()),
        ));
    }
    let session = session(fields[1])?;
    Ok(Some(match name {
        "MAINT_ENTER" => Command::MaintEnter {
            session,
            target: target(fields[2])?,
            url: fields[3].to_string(),
        },
        "MAINT_EXIT" => Command::MaintExit {
            session,
            target: target(fields[2])?,
        },
        "DRAIN_START" => Command::DrainStart {
            session,
            secs: secs(fields[2])?,
        },
        _ => Command::CircuitStatus {
            session,
            route: route(fields[2])?,
        },
    }))
}

fn invalid(message: String) -> Reply {
    Reply::err("invalid_argument", message)
}

/// A session id: what the client calls itself; logged with every command it sends.
fn session(s: &str) -> Result<String, Reply> {
    if s.is_empty() {
        return Err(invalid("session is empty".into()));
    }
    if s.len() > MAX_SESSION || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "session {} may hold at most {MAX_SESSION} printable ASCII characters, without spaces",
            quote(s)
        )));
    }
    Ok(s.to_string())
}

fn target(s: &str) -> Result<String, Reply> {
    if s.trim().is_empty() {
        return Err(invalid(
            "target is empty; give ALL, or services or routes separated by commas".into(),
        ));
    }
    let list = Target::parse_list(s).map_err(|m| invalid(format!("target: {m}")))?;
    let names: Vec<String> = list.iter().map(|t| t.to_string()).collect();
    Ok(names.join(","))
}

fn secs(s: &str) -> Result<u64, Reply> {
    match s.parse::<u64>() {
        Ok(n) if (1..=MAX_DRAIN_SECS).contains(&n) && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(n)
        }
        _ => Err(invalid(format!(
            "secs must be a whole number of seconds from 1 to {MAX_DRAIN_SECS}, got {}",
            quote(s)
        ))),
    }
}

fn route(s: &str) -> Result<String, Reply> {
    if s.is_empty() {
        return Err(invalid("route is empty".into()));
    }
    if !crate::model::valid_name(s) {
        return Err(invalid(format!(
            "route {} may only hold letters, digits, '-', '_' and '.' (64 at most)",
            quote(s)
        )));
    }
    Ok(s.to_string())
}

/// Run one command.
pub async fn run(app: &Arc<App>, cmd: Command) -> Reply {
    match cmd {
        Command::MaintEnter {
            session,
            target,
            url,
        } => maint_enter(app, &session, target, url).await,
        Command::MaintExit { session, target } => maint_exit(app, &session, &target).await,
        Command::DrainStart { session, secs } => drain_start(app, &session, secs).await,
        Command::CircuitStatus { session, route } => circuit_status(app, &session, &route),
    }
}

/// `MAINT_ENTER`: `App::enter` with the target and the custom page URL (empty: the default
/// page), as `kinfractl maint enter --target T --url U`.
pub async fn maint_enter(app: &Arc<App>, session: &str, target: String, url: String) -> Reply {
    tracing::info!(session, %target, %url, "line protocol: MAINT_ENTER");
    let req = MaintRequest {
        url: Some(url),
        target: Some(target.clone()),
        ..MaintRequest::default()
    };
    match app.enter(req).await {
        Ok(_) => Reply::MaintOk(target),
        Err(e) => e.into(),
    }
}

/// `MAINT_EXIT`: `ALL` leaves every record, as `kinfractl maint exit --all` (the registry's
/// `ALL` meant every route); a service, a route or a comma list leaves those records, as
/// `kinfractl maint exit --target T`.
pub async fn maint_exit(app: &Arc<App>, session: &str, target: &str) -> Reply {
    tracing::info!(session, %target, "line protocol: MAINT_EXIT");
    let r = if target.eq_ignore_ascii_case("ALL") {
        app.exit_all().await
    } else {
        app.exit(Some(target)).await
    };
    match r {
        Ok(_) => Reply::MaintOk(target.to_string()),
        Err(e) => e.into(),
    }
}

/// `DRAIN_START`: `App::drain_start` over every service for `secs` seconds, as
/// `kinfractl drain start --duration {secs}s`; answers `DRAIN_OK|<end, RFC 3339>` after the
/// `ACK`.
pub async fn drain_start(app: &Arc<App>, session: &str, secs: u64) -> Reply {
    tracing::info!(session, secs, "line protocol: DRAIN_START");
    let Some(ms) = secs.checked_mul(1000) else {
        return Reply::err(
            "invalid_argument",
            format!("{secs} seconds is too long a drain"),
        );
    };
    match app.drain_start(None, ms).await {
        Ok(r) => Reply::DrainOk(
            r.end_time
                .map(crate::protocol::fmt::iso)
                .unwrap_or_default(),
        ),
        Err(e) => e.into(),
    }
}

/// `CIRCUIT_STATUS`: one service's state from `App::service_reports` (what `kinfractl ps`
/// shows), with its maintenance: `maintenance=… hits=… url=…` first, then the circuit and the
/// service's state.
pub fn circuit_status(app: &Arc<App>, session: &str, route: &str) -> Reply {
    tracing::debug!(session, route, "line protocol: CIRCUIT_STATUS");
    let reports = app.service_reports();
    let Some(r) = reports.iter().find(|r| r.name == route) else {
        let known: Vec<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        return Reply::err(
            "not_found",
            format!(
                "unknown route {} (known: {})",
                quote(route),
                if known.is_empty() {
                    "none configured".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
    };
    // The service's routes: their hits together, and the custom page of the record that
    // answers the first of them (what a visitor of the service is shown).
    let svc = app.services();
    let routes: Vec<_> = svc
        .table
        .routes()
        .iter()
        .filter(|r| r.target.name == route)
        .collect();
    let hits: u64 = routes
        .iter()
        .map(|r| app.hit_counters().route_hits(&r.spec))
        .sum();
    let maint = app.maint();
    let url = routes
        .first()
        .and_then(|r| maint.for_route(Some(r)))
        .and_then(|a| a.record.page_url.clone())
        .unwrap_or_default();
    Reply::Status(format!(
        "maintenance={} hits={hits} url={url} circuit={} failures={} health={} state={} requests={} errors={}",
        r.in_maintenance,
        r.circuit_state,
        r.circuit_failures,
        r.health.to_ascii_lowercase(),
        r.state,
        r.requests,
        r.failures,
    ))
}

/// The first byte the peer sent, without taking it from the socket (`None`: it closed).
pub async fn first_byte(stream: &UnixStream) -> std::io::Result<Option<u8>> {
    loop {
        stream.readable().await?;
        let mut b = [0u8; 1];
        let peeked = stream.try_io(Interest::READABLE, || {
            nix::sys::socket::recv(
                stream.as_raw_fd(),
                &mut b,
                nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)
        });
        match peeked {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Refuse a peer that speaks lines (its credentials were not accepted), and close.
pub async fn refuse(mut stream: UnixStream, message: &str) {
    let (mut r, mut w) = stream.split();
    if w.write_all(&Reply::err("permission_denied", message).encode())
        .await
        .is_ok()
    {
        close_gently(&mut r, &mut w).await;
    }
}

/// Most bytes read and dropped while closing, and how long that may take.
const LINGER_BYTES: u64 = 64 * 1024;
const LINGER: Duration = Duration::from_secs(2);

/// After a last reply: shut the write side, then read and drop what the peer still sends (up
/// to [`LINGER_BYTES`], for up to [`LINGER`]). Closing with unread input would make the kernel
/// reset the connection, and a client reading to the end would lose the reply with it.
async fn close_gently<R, W>(r: &mut R, w: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    if w.shutdown().await.is_err() {
        return;
    }
    let mut sink = tokio::io::sink();
    let _ = tokio::time::timeout(
        LINGER,
        tokio::io::copy(&mut r.take(LINGER_BYTES), &mut sink),
    )
    .await;
}

/// Answer lines until the peer closes, stays idle for `idle`, or sends a line too long.
pub async fn serve(app: Arc<App>, stream: UnixStream, idle: Duration) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        let mut bounded = (&mut r).take(READ_LIMIT as u64);
        match tokio::time::timeout(idle, bounded.read_until(b'\n', &mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let (reply, close) = match cut_line(&buf) {
            Cut::TooLong => (
                Reply::err(
                    "line_too_long",
                    format!("line longer than {MAX_LINE} bytes; closing"),
                ),
                true,
            ),
            Cut::Line(line) => match parse(line) {
                Ok(None) => continue,
                Ok(Some(cmd)) => (run(&app, cmd).await, false),
                Err(reply) => (reply, false),
            },
        };
        if w.write_all(&reply.encode()).await.is_err() {
            return;
        }
        if close {
            close_gently(&mut r, &mut w).await;
            return;
        }
    }
}

#[cfg(test)]
#[path = "line_tests.rs"]
mod tests;
