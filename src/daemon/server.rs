//! The accept loop: every TCP connection is counted, served by the fast path, and handed to
//! hyper (HTTP/1.1 and h2c) when the fast path does not take it; on stop, connections drain for
//! the grace period. Hand-written over hyper-util so connections can be counted and drained.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use crate::app::App;
use crate::proxy::HEADER_READ_TIMEOUT;
use crate::proxy::answers::*;
use crate::web::router::router;

struct ConnGuard(Arc<App>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the HTTP server starts with besides its listeners, and where it leaves connections.
pub struct Handover {
    /// Client connections the previous kinfrad left idle in systemd's descriptor store.
    pub resumed: Vec<std::net::TcpStream>,
    /// Where connections idle at the stop go (to be stored for the next kinfrad); `None`:
    /// they are closed.
    pub idle: Option<mpsc::UnboundedSender<tokio::net::TcpStream>>,
}

/// Serve HTTP on `listeners` until `shutdown` turns true, then let in-flight requests finish
/// for up to `grace`.
///
/// Accepting starts once every service's first probe has answered (`App::first_probes`), so a
/// restarted kinfrad does not show loading pages for healthy services. At the stop, accepting
/// stops at once (new connections wait in the socket's backlog for the next kinfrad); every
/// connection already accepted is served, and the fast path's connections that are idle
/// between two requests go to `handover.idle` rather than being closed.
pub async fn serve(
    app: Arc<App>,
    listeners: Vec<tokio::net::TcpListener>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    handover: Handover,
) {
    app.first_probes().await;
    let (tx, mut rx) = mpsc::channel::<(tokio::net::TcpStream, SocketAddr)>(256);
    for s in handover.resumed {
        let pair = s
            .set_nonblocking(true)
            .and_then(|()| s.peer_addr())
            .and_then(|peer| Ok((tokio::net::TcpStream::from_std(s)?, peer)));
        match pair {
            Ok(pair) => {
                if tx.send(pair).await.is_err() {
                    break;
                }
            }
            Err(e) => tracing::debug!(error = %e, "a handed-over connection is gone"),
        }
    }
    for l in listeners {
        let tx = tx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                // The stop ends the wait for a connection, never a hand-over in progress:
                // nothing accepted is dropped.
                let got = tokio::select! {
                    r = l.accept() => r,
                    _ = crate::stop::stopped(&mut stop) => break,
                };
                match got {
                    Ok(pair) => {
                        if tx.send(pair).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    drop(tx);
    let idle_out = handover.idle;
    let router = router(app.clone());
    let mut limits = 0usize;
    let mut builder = Arc::new(conn_builder(limits));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Diagnostics and A/B benchmarks: KINFRA_FAST_PATH=0 serves every connection with hyper.
    let fast = std::env::var("KINFRA_FAST_PATH").map_or(true, |v| v != "0");
    // After the stop, the loop goes on until the accept tasks have handed over what they
    // accepted (the channel closes when they have all ended).
    let mut stopped = false;
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some((stream, peer)) = got else { break };
                let _ = stream.set_nodelay(true);
                // The head limit follows reloads; the builder is rebuilt only when it moved.
                let want = app.config().max_header_bytes;
                if want != limits {
                    limits = want;
                    builder = Arc::new(conn_builder(limits));
                }
                app.connections.fetch_add(1, Ordering::Relaxed);
                let guard = ConnGuard(app.clone());
                let router = router.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let mut stop = shutdown.clone();
                let app = app.clone();
                let idle_out = idle_out.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    let outcome = if fast {
                        crate::proxy::h1::serve(&app, &router, stream, peer, &mut stop).await
                    } else {
                        crate::proxy::h1::Outcome::Handoff(stream, Vec::new())
                    };
                    let (stream, pre) = match outcome {
                        crate::proxy::h1::Outcome::Handoff(stream, pre) => (stream, pre),
                        crate::proxy::h1::Outcome::Idle(stream) => {
                            if let Some(out) = idle_out {
                                let _ = out.send(stream);
                            }
                            return;
                        }
                        crate::proxy::h1::Outcome::Closed => return,
                    };
                    if *stop.borrow() {
                        return;
                    }
                    let limit = send_limit(&app);
                    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(Peer(peer));
                        let refused = ambiguous_framing(req.headers())
                            .or_else(|| missing_host(&req))
                            .map(|why| (StatusCode::BAD_REQUEST, "bad_request", why))
                            .or_else(|| refused_method(req.method()));
                        let router = router.clone();
                        let app = app.clone();
                        async move {
                            match refused {
                                Some((status, code, why)) => {
                                    let refused = crate::model::metrics::Answer::Refused;
                                    app.unrouted_requests().count(refused, status.as_u16());
                                    Ok(refuse(status, code, why))
                                }
                                None => {
                                    let r = crate::proxy::tally::routed(&app, async {
                                        let Ok(r) = router.oneshot(req.map(Body::new)).await;
                                        r
                                    })
                                    .await;
                                    Ok::<_, std::convert::Infallible>(r)
                                }
                            }
                        }
                    });
                    let io = TokioIo::new(crate::proxy::h1::Prefixed::new(stream, pre, limit));
                    let conn = builder.serve_connection_with_upgrades(io, svc);
                    if let Err(e) = watcher.watch(conn.into_owned()).await {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                });
            }
            _ = crate::stop::stopped(&mut shutdown), if !stopped => stopped = true,
        }
    }
    drop(idle_out);
    // hyper's connections close once idle; the fast path's leave between requests, handed over
    // or closed (they watch the same stop signal). Wait for both, up to the grace period.
    let drained = async {
        graceful.shutdown().await;
        while app.connections.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = drained => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_secs = grace.as_secs_f64(), "grace period over; closing remaining connections"),
    }
}

/// How long a client of a connection hyper serves may take nothing of a response: the longest
/// `timeouts.idle` of the services (the limit the fast path gives a proxied response), or the
/// limit of kinfrad's own responses when no service is configured.
fn send_limit(app: &App) -> Duration {
    app.services()
        .list
        .iter()
        .map(|u| u.cfg().timeouts.idle)
        .max()
        .unwrap_or(crate::proxy::h1::SEND_LIMIT)
}

/// Connection settings for clients: HTTP/1.1 and h2c, heads at most `max_head` bytes (larger
/// ones get 431 from hyper), a deadline for the head.
fn conn_builder(max_head: usize) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let max_head = max_head.max(8192);
    let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(max_head)
        .max_headers(200);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_head).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Duration::from_secs(60));
    b
}
