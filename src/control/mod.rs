//! The control socket server: one task per connection, peers checked with SO_PEERCRED,
//! requests answered in order (see `protocol` for the wire format). A connection whose first
//! byte is a letter speaks the line protocol of `line` instead, under the same peer check.

pub mod line;

mod wait;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::app::{App, MaintRequest};
use crate::protocol::{self, ErrorCode, FrameError, PROTOCOL_VERSION, Request, Response};

/// Most control connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// A connection idle for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a refused peer's first byte is waited for, to answer it in its own protocol.
const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// Who may use the control socket.
#[derive(Debug, Clone)]
pub struct Access {
    pub own_uid: u32,
    /// gid of the configured control group, when it exists.
    pub group_gid: Option<u32>,
    pub group_name: String,
}

impl Access {
    pub fn new(group: &str) -> Access {
        let group_gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        Access {
            own_uid: nix::unistd::geteuid().as_raw(),
            group_gid,
            group_name: group.to_string(),
        }
    }

    /// root, our own uid, or a process whose primary or supplementary groups include the group.
    pub fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        if uid == 0 || uid == self.own_uid {
            return true;
        }
        let Some(g) = self.group_gid else {
            return false;
        };
        if gid == g {
            return true;
        }
        pid.is_some_and(|p| supplementary_groups(p).contains(&g))
    }
}

fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    s.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Accept control connections until `shutdown` turns true.
pub async fn serve(
    app: Arc<App>,
    listener: UnixListener,
    access: Access,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!("too many control connections; refusing one");
                        let mut s = stream;
                        let _ = protocol::send_response(&mut s, &Response::error(ErrorCode::Internal, "too many control connections")).await;
                        continue;
                    };
                    let app = app.clone();
                    let access = access.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        handle(app, stream, access).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = crate::stop::stopped(&mut shutdown) => break,
        }
    }
}

async fn handle(app: Arc<App>, mut stream: UnixStream, access: Access) {
    let cred = stream.peer_cred();
    let allowed = match &cred {
        Ok(c) => access.allows(c.uid(), c.gid(), c.pid()),
        Err(_) => false,
    };
    if !allowed {
        let who = cred
            .map(|c| format!("uid {} gid {}", c.uid(), c.gid()))
            .unwrap_or_else(|_| "unknown peer".into());
        tracing::warn!(peer = %who, "control connection refused");
        let msg = format!(
            "permission denied for {who}: the control socket accepts root, kinfrad's user and members of group '{}'",
            access.group_name
        );
        let first = tokio::time::timeout(REFUSAL_WAIT, line::first_byte(&stream)).await;
        if let Ok(Ok(Some(b))) = first
            && line::starts_line(b)
        {
            line::refuse(stream, &msg).await;
            return;
        }
        let _ = protocol::send_response(
            &mut stream,
            &Response::error(ErrorCode::PermissionDenied, msg),
        )
        .await;
        return;
    }
    // A frame starts with its length (first byte 0, frames being small); a line with a letter.
    match tokio::time::timeout(IDLE_TIMEOUT, line::first_byte(&stream)).await {
        Ok(Ok(Some(b))) if line::starts_line(b) => {
            return line::serve(app, stream, IDLE_TIMEOUT).await;
        }
        Ok(Ok(Some(_))) => {}
        Err(_) | Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "control read failed");
            return;
        }
    }
    let mut greeted = false;
    loop {
        let frame =
            match tokio::time::timeout(IDLE_TIMEOUT, protocol::read_frame(&mut stream)).await {
                Err(_) => return,
                Ok(Err(FrameError::Closed)) => return,
                Ok(Err(FrameError::TooLarge(n))) => {
                    let _ = protocol::send_response(
                        &mut stream,
                        &Response::error(
                            ErrorCode::FrameTooLarge,
                            format!("frame of {n} bytes exceeds {} bytes", protocol::MAX_FRAME),
                        ),
                    )
                    .await;
                    return;
                }
                Ok(Err(FrameError::Io(e))) => {
                    tracing::debug!(error = %e, "control read failed");
                    return;
                }
                Ok(Ok(f)) => f,
            };
        let req: Request = match serde_json::from_slice(&frame) {
            Ok(r) => r,
            Err(e) => {
                let msg = describe_bad_request(&frame, &e);
                if protocol::send_response(
                    &mut stream,
                    &Response::error(ErrorCode::BadRequest, msg),
                )
                .await
                .is_err()
                {
                    return;
                }
                continue;
            }
        };
        if !greeted {
            match req {
                Request::Hello {
                    protocol: v,
                    client,
                } => {
                    if v != PROTOCOL_VERSION {
                        let _ = protocol::send_response(
                            &mut stream,
                            &Response::error(
                                ErrorCode::UnsupportedVersion,
                                format!("client speaks protocol {v}, kinfrad speaks {PROTOCOL_VERSION}; use matching versions"),
                            ),
                        )
                        .await;
                        return;
                    }
                    tracing::debug!(%client, "control client connected");
                    greeted = true;
                    let hello = Response::Hello {
                        protocol: PROTOCOL_VERSION,
                        server: format!("kinfrad {}", env!("CARGO_PKG_VERSION")),
                    };
                    if protocol::send_response(&mut stream, &hello).await.is_err() {
                        return;
                    }
                    continue;
                }
                _ => {
                    let _ = protocol::send_response(
                        &mut stream,
                        &Response::error(
                            ErrorCode::HandshakeRequired,
                            "send {\"type\":\"hello\",\"protocol\":1,...} first",
                        ),
                    )
                    .await;
                    return;
                }
            }
        }
        let resp = if matches!(req, Request::DrainWait | Request::Events { wait: true, .. }) {
            tokio::select! {
                r = dispatch(&app, req) => r,
                () = wait::hung_up(&stream) => return,
            }
        } else {
            dispatch(&app, req).await
        };
        if protocol::send_response(&mut stream, &resp).await.is_err() {
            return;
        }
    }
}

fn describe_bad_request(frame: &[u8], e: &serde_json::Error) -> String {
    #[derive(serde::Deserialize)]
    struct Tag {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    // Both echo the request: cut, so the answer stays small whatever was sent.
    let e = e.to_string();
    match serde_json::from_slice::<Tag>(frame) {
        Ok(Tag { ty: Some(t) }) if e.contains("unknown variant") => {
            format!(
                "unknown request type {:?}",
                protocol::clip(&t, protocol::MAX_ECHO)
            )
        }
        Ok(Tag { ty: None }) => "request has no \"type\" field".to_string(),
        _ => format!("malformed request: {}", clip_middle(&e, protocol::MAX_ECHO)),
    }
}

/// `s` cut to about `max` bytes by dropping its middle (a serde error quotes the value first
/// and says what was expected, and where, at the end).
fn clip_middle(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut head = max / 2;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - max / 2;
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &s[..head], &s[tail..]).into()
}

/// Run one request. Each variant maps to the `App` operation of the same name.
pub async fn dispatch(app: &Arc<App>, req: Request) -> Response {
    let result = match req {
        Request::Hello { .. } => {
            return Response::Hello {
                protocol: PROTOCOL_VERSION,
                server: format!("kinfrad {}", env!("CARGO_PKG_VERSION")),
            };
        }
        Request::Status => return Response::Status(app.report()),
        Request::Token => {
            return Response::Token {
                token: app.token().to_string(),
            };
        }
        Request::MaintEnter {
            url,
            message,
            issue,
            countdown_secs,
            target,
        } => app
            .enter(MaintRequest {
                url,
                message,
                issue,
                countdown_secs,
                eta_ms: None,
                target,
            })
            .await
            .map(Response::Maintenance),
        Request::MaintUpdate {
            message,
            issue,
            countdown_secs,
            target,
            url,
        } => app
            .update(MaintRequest {
                message,
                issue,
                countdown_secs,
                target,
                url,
                ..MaintRequest::default()
            })
            .await
            .map(Response::Maintenance),
        Request::MaintExit { all: true, .. } => app.exit_all().await.map(Response::Maintenance),
        Request::MaintExit { target, all: false } => {
            app.exit(target.as_deref()).await.map(Response::Maintenance)
        }
        Request::MaintSchedule {
            at,
            duration_secs,
            every,
            tz,
            target,
            warn_secs,
            message,
            issue,
        } => app
            .schedule_add(crate::app::ScheduleRequest {
                at,
                duration_secs,
                every,
                tz,
                target,
                warn_secs,
                message,
                issue,
            })
            .await
            .map(|w| Response::Schedule { windows: vec![w] }),
        Request::MaintScheduleList => Ok(Response::Schedule {
            windows: app.schedule_list(),
        }),
        Request::MaintScheduleCancel { id } => app
            .schedule_cancel(id)
            .await
            .map(|w| Response::Schedule { windows: vec![w] }),
        Request::MaintList => {
            return Response::MaintRecords {
                records: app.maint_list(),
            };
        }
        Request::Reload => app
            .reload()
            .await
            .map(|config| Response::Reloaded { config }),
        Request::Ps => Ok(Response::Services {
            services: app.service_reports(),
        }),
        Request::ServiceStart { service } => {
            service_action(app, service, crate::supervisor::Command::Start).await
        }
        Request::ServiceStop { service } => {
            service_action(app, service, crate::supervisor::Command::Stop).await
        }
        Request::ServiceRestart { service } => {
            service_action(app, service, crate::supervisor::Command::Restart).await
        }
        Request::ServiceProgress {
            service,
            message,
            steps,
            clear,
        } => app
            .service_progress(&service, message, steps, clear)
            .map(|()| Response::ServiceAction {
                service,
                action: "progress".to_string(),
            }),
        Request::DrainStart {
            target,
            duration_ms,
        } => app
            .drain_start(target.as_deref(), duration_ms)
            .await
            .map(Response::Drain),
        Request::DrainStop => app.drain_stop().await.map(Response::Drain),
        Request::DrainStatus => Ok(Response::Drain(app.drain_report())),
        Request::DrainWait => app.drain_wait().await.map(Response::Drain),
        Request::MaintBypassLink {
            ttl_secs,
            target,
            base,
            path,
        } => app
            .bypass_link(
                ttl_secs,
                target.as_deref(),
                base.as_deref(),
                path.as_deref(),
            )
            .map(|l| Response::BypassLink {
                url: l.url,
                expires: crate::protocol::fmt::iso(l.expires_ms),
                ttl_secs: l.ttl_secs,
                target: l.target,
            }),
        Request::Events { after, wait } => {
            let after = after.unwrap_or(0);
            let budget = Some(crate::protocol::MAX_FRAME - 1024);
            if wait {
                app.events_wait(after, budget).await.map(Response::Events)
            } else {
                Ok(Response::Events(app.events_report(after, budget)))
            }
        }
        Request::Fleet { change, revision } => app
            .fleet_change(change, revision)
            .await
            .map(|r| Response::Fleet(Box::new(r))),
        Request::FleetList => app.fleet_list().await.map(|r| Response::Fleet(Box::new(r))),
        Request::FleetStatus => app.fleet_status().map(|r| Response::Fleet(Box::new(r))),
        Request::Logs { service, lines } => app
            .service_logs(&service, lines.min(100_000) as usize)
            .map(|(lines, dropped)| {
                let (lines, omitted) = fit_frame(&lines);
                Response::Logs {
                    service,
                    lines,
                    dropped,
                    omitted,
                }
            }),
    };
    result.unwrap_or_else(|e| Response::Error {
        code: e.code,
        message: e.message,
    })
}

async fn service_action(
    app: &Arc<App>,
    service: String,
    cmd: crate::supervisor::Command,
) -> Result<Response, crate::app::OpError> {
    app.service_command(&service, cmd).await?;
    Ok(Response::ServiceAction {
        service,
        action: cmd.as_str().to_string(),
    })
}

/// The newest lines that fit one frame (with room for the envelope), and how many older ones
/// were left out. Lines are converted newest first, and only as many as fit.
fn fit_frame(lines: &[crate::supervisor::LogLine]) -> (Vec<crate::protocol::LogEntry>, u64) {
    let budget = crate::protocol::MAX_FRAME - 1024;
    let mut used = 0usize;
    let mut kept = Vec::new();
    for l in lines.iter().rev() {
        let e = crate::protocol::LogEntry::from(l);
        let n = serde_json::to_vec(&e)
            .map(|v| v.len() + 1)
            .unwrap_or(usize::MAX);
        used = used.saturating_add(n);
        if used > budget {
            break;
        }
        kept.push(e);
    }
    kept.reverse();
    let omitted = (lines.len() - kept.len()) as u64;
    (kept, omitted)
}

#[cfg(test)]
mod tests;
