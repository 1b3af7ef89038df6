//! A small etcd v3 client for the fleet: the calls kinfrad needs (range, a compare-and-put
//! transaction, watch, leases) over etcd's own JSON gateway on its client port, with hyper and
//! rustls, which kinfrad already links. (The gRPC crate would need `protoc` at build time, so a
//! fresh machine could no longer build kinfrad with cargo alone.)
//!
//! Every call tries the endpoint that answered last, then the others in turn: a member that is
//! down, unreachable, or without a leader is passed over. Unary calls have a deadline; a watch
//! is a stream that ends when its member goes away, and the caller starts another.

mod wire;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;

pub use wire::Kv;

/// How long a unary call may take on one endpoint.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a unary call keeps trying rounds of every endpoint.
const RETRY_FOR: Duration = Duration::from_secs(6);
/// The pause between two rounds.
const ROUND_PAUSE: Duration = Duration::from_millis(250);
/// The largest answer read (a range of the whole prefix, a watch message).
const MAX_ANSWER: usize = 4 << 20;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// No endpoint answered (each one's failure, joined).
    #[error("no etcd endpoint answered: {0}")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd refused: {0}")]
    Refused(String),
    /// The watch's start revision was compacted away; read everything again.
    #[error("revision compacted (oldest kept: {0})")]
    Compacted(i64),
    /// An answer this client cannot read.
    #[error("unreadable answer from etcd: {0}")]
    BadAnswer(String),
}

/// How long a call keeps trying while no endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Each endpoint once: for a task that tries again on its own.
    OneRound,
    /// Rounds for [`RETRY_FOR`]: for an operator waiting on a command.
    Rounds,
}

/// The outcome of a compare-and-put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// Written; the key as it now is.
    Done(Kv),
    /// The key had changed since `mod_revision`: what it is now (absent: deleted).
    Conflict(Option<Kv>),
}

/// One batch of watch events, all at or below `revision`.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    pub revision: i64,
    /// `(kv, deleted)`; a deleted key's value is empty.
    pub events: Vec<(Kv, bool)>,
}

pub struct Etcd {
    endpoints: Vec<Uri>,
    current: AtomicUsize,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .finish()
    }
}

impl Etcd {
    /// A client of `endpoints` (http:// or https:// URLs, checked by the config), with `tls` for
    /// the https ones.
    pub fn new(endpoints: &[String], tls: rustls::ClientConfig) -> Result<Etcd, String> {
        let endpoints = endpoints
            .iter()
            .map(|e| {
                e.trim_end_matches('/')
                    .parse::<Uri>()
                    .map_err(|err| format!("etcd endpoint {e:?}: {err}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoints".to_string());
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        let conn = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(conn);
        Ok(Etcd {
            endpoints,
            current: AtomicUsize::new(0),
            client,
        })
    }

    /// The endpoint that answered last.
    pub fn endpoint(&self) -> String {
        let i = self.current.load(Ordering::Relaxed) % self.endpoints.len();
        self.name(i)
    }

    /// Endpoint `i` as the config writes it (no trailing `/`).
    fn name(&self, i: usize) -> String {
        self.endpoints[i]
            .to_string()
            .trim_end_matches('/')
            .to_string()
    }

    async fn send_once(
        &self,
        i: usize,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<hyper::Response<Incoming>, String> {
        let uri = format!("{}{path}", self.name(i));
        let req = Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        self.client
            .request(req)
            .await
            .map_err(|e| crate_error_text(&e))
    }

    /// POST `body` to `path`, on each endpoint in turn until one answers; while none does,
    /// again every [`ROUND_PAUSE`] for up to [`RETRY_FOR`] (an election after the leader died
    /// takes about a second).
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: serde_json::Value,
        patience: Patience,
    ) -> Result<T, Error> {
        if patience == Patience::OneRound {
            return self.call_round(path, &body).await;
        }
        let until = tokio::time::Instant::now() + RETRY_FOR;
        loop {
            match self.call_round(path, &body).await {
                Err(Error::Unreachable(e)) if tokio::time::Instant::now() + ROUND_PAUSE < until => {
                    tracing::debug!(error = %e, "etcd: no endpoint answered; trying again");
                    tokio::time::sleep(ROUND_PAUSE).await;
                }
                r => return r,
            }
        }
    }

    /// One round of [`call`](Self::call): each endpoint once.
    async fn call_round<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, Error> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let attempt = async {
                let resp = self.send_once(i, path, body).await?;
                let status = resp.status();
                let bytes = read_all(resp.into_body()).await?;
                Ok::<_, String>((status, bytes))
            };
            let (status, bytes) = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    failures.push(format!("{}: {e}", self.name(i)));
                    continue;
                }
                Err(_) => {
                    failures.push(format!(
                        "{}: no answer within {} ms",
                        self.name(i),
                        CALL_TIMEOUT.as_millis()
                    ));
                    continue;
                }
            };
            if status != StatusCode::OK {
                let e: wire::ErrorAnswer =
                    serde_json::from_slice(&bytes).unwrap_or_else(|_| wire::ErrorAnswer {
                        message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                        code: 0,
                    });
                // Unavailable (no leader, stopping) or a deadline: another member may do.
                if e.code == 14 || e.code == 4 || (status.is_server_error() && e.code == 0) {
                    failures.push(format!("{}: {}", self.name(i), e.message));
                    continue;
                }
                return Err(Error::Refused(e.message));
            }
            self.current.store(i, Ordering::Relaxed);
            return serde_json::from_slice(&bytes).map_err(|e| Error::BadAnswer(e.to_string()));
        }
        Err(Error::Unreachable(failures.join("; ")))
    }

    /// Every key under `prefix` (or `prefix` alone), and the store's revision.
    pub async fn range(
        &self,
        key: &[u8],
        prefix: bool,
        patience: Patience,
    ) -> Result<(i64, Vec<Kv>), Error> {
        let a: wire::RangeAnswer = self
            .call("/v3/kv/range", wire::range_request(key, prefix), patience)
            .await?;
        let kvs = a
            .kvs
            .into_iter()
            .map(wire::RawKv::decode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::BadAnswer)?;
        Ok((a.header.revision, kvs))
    }

    /// Put `value` at `key` if the key was last changed at `mod_revision` (0: if it does not
    /// exist), in one transaction.
    pub async fn put_if(&self, key: &[u8], mod_revision: i64, value: &[u8]) -> Result<Put, Error> {
        let a: wire::TxnAnswer = self
            .call(
                "/v3/kv/txn",
                wire::txn_put_if(key, mod_revision, value),
                Patience::Rounds,
            )
            .await?;
        let now = a
            .responses
            .into_iter()
            .filter_map(|r| r.response_range)
            .flat_map(|r| r.kvs)
            .next()
            .map(wire::RawKv::decode)
            .transpose()
            .map_err(Error::BadAnswer)?;
        if a.succeeded {
            let kv =
                now.ok_or_else(|| Error::BadAnswer("the key written reads back empty".into()))?;
            Ok(Put::Done(kv))
        } else {
            Ok(Put::Conflict(now))
        }
    }

    /// Put `value` at `key`, bound to `lease` (0: none), trying each endpoint once.
    pub async fn put(&self, key: &[u8], value: &[u8], lease: i64) -> Result<(), Error> {
        let _: serde_json::Value = self
            .call(
                "/v3/kv/put",
                wire::put_request(key, value, lease),
                Patience::OneRound,
            )
            .await?;
        Ok(())
    }

    /// A new lease of `ttl_secs`; its id.
    pub async fn lease_grant(&self, ttl_secs: i64) -> Result<i64, Error> {
        let a: wire::LeaseAnswer = self
            .call(
                "/v3/lease/grant",
                serde_json::json!({ "TTL": ttl_secs.to_string() }),
                Patience::OneRound,
            )
            .await?;
        if a.id == 0 {
            return Err(Error::BadAnswer("lease granted without an id".into()));
        }
        Ok(a.id)
    }

    /// Keep `lease` alive; its remaining TTL (0 or less: it has expired).
    pub async fn lease_keepalive(&self, lease: i64) -> Result<i64, Error> {
        let a: wire::LeaseAnswer = self
            .call(
                "/v3/lease/keepalive",
                serde_json::json!({ "ID": lease.to_string() }),
                Patience::OneRound,
            )
            .await?;
        Ok(a.ttl)
    }

    pub async fn lease_revoke(&self, lease: i64) -> Result<(), Error> {
        let _: serde_json::Value = self
            .call(
                "/v3/lease/revoke",
                serde_json::json!({ "ID": lease.to_string() }),
                Patience::OneRound,
            )
            .await?;
        Ok(())
    }

    /// Watch every key under `prefix` from `start_revision`, on the first endpoint that takes
    /// the watch.
    pub async fn watch(&self, prefix: &[u8], start_revision: i64) -> Result<Watch, Error> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed);
        let body = wire::watch_request(prefix, start_revision);
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            match tokio::time::timeout(CALL_TIMEOUT, self.send_once(i, "/v3/watch", &body)).await {
                Ok(Ok(resp)) if resp.status() == StatusCode::OK => {
                    self.current.store(i, Ordering::Relaxed);
                    let mut w = Watch {
                        body: resp.into_body(),
                        buf: BytesMut::new(),
                        endpoint: self.name(i),
                    };
                    // The first message says the watch was created (or why not).
                    w.next().await?;
                    return Ok(w);
                }
                Ok(Ok(resp)) => failures.push(format!("{}: {}", self.name(i), resp.status())),
                Ok(Err(e)) => failures.push(format!("{}: {e}", self.name(i))),
                Err(_) => failures.push(format!("{}: no answer", self.name(i))),
            }
        }
        Err(Error::Unreachable(failures.join("; ")))
    }
}

/// An open watch stream.
pub struct Watch {
    body: Incoming,
    buf: BytesMut,
    pub endpoint: String,
}

impl Watch {
    /// The next batch of events (possibly none: a created or progress message). `Err` when
    /// the stream ended or broke (start another), or [`Error::Compacted`].
    pub async fn next(&mut self) -> Result<Batch, Error> {
        loop {
            if let Some(msg) = self.take_message()? {
                return decode_batch(msg);
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                        if self.buf.len() > MAX_ANSWER {
                            return Err(Error::BadAnswer("a watch message too large".into()));
                        }
                    }
                }
                Some(Err(e)) => return Err(Error::Unreachable(format!("{}: {e}", self.endpoint))),
                None => {
                    return Err(Error::Unreachable(format!(
                        "{}: the watch stream ended",
                        self.endpoint
                    )));
                }
            }
        }
    }

    /// One complete JSON message off the front of the buffer, if there is one.
    fn take_message(&mut self) -> Result<Option<wire::WatchMessage>, Error> {
        let start = self
            .buf
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(self.buf.len());
        let _ = self.buf.split_to(start);
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut it =
            serde_json::Deserializer::from_slice(&self.buf).into_iter::<wire::WatchMessage>();
        match it.next() {
            Some(Ok(m)) => {
                let used = it.byte_offset();
                let _ = self.buf.split_to(used);
                Ok(Some(m))
            }
            Some(Err(e)) if e.is_eof() => Ok(None),
            Some(Err(e)) => Err(Error::BadAnswer(e.to_string())),
            None => Ok(None),
        }
    }
}

fn decode_batch(msg: wire::WatchMessage) -> Result<Batch, Error> {
    if let Some(e) = msg.error {
        return Err(Error::Refused(e.message));
    }
    let Some(r) = msg.result else {
        return Ok(Batch::default());
    };
    if r.compact_revision > 0 {
        return Err(Error::Compacted(r.compact_revision));
    }
    if r.canceled {
        return Err(Error::Refused(format!(
            "watch cancelled: {}",
            r.cancel_reason
        )));
    }
    let mut events = Vec::with_capacity(r.events.len());
    for ev in r.events {
        let deleted = ev.kind.as_deref() == Some("DELETE");
        events.push((ev.kv.decode().map_err(Error::BadAnswer)?, deleted));
    }
    Ok(Batch {
        revision: r.header.revision,
        events,
    })
}

async fn read_all(body: Incoming) -> Result<Bytes, String> {
    let limited = http_body_util::Limited::new(body, MAX_ANSWER);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

/// The innermost cause of a client error ("Connection refused", a TLS alert).
fn crate_error_text(e: &hyper_util::client::legacy::Error) -> String {
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    let mut last = e.to_string();
    while let Some(c) = cur {
        last = c.to_string();
        cur = c.source();
    }
    last
}
