//! Entry points for the fuzz targets in `fuzz/`: the fast path's parsing on bytes, no sockets.

use super::*;

use super::exchange::{Framing, rewrite_interim, rewrite_response};
use super::relay::Chunked;

/// What the fast path does with the bytes a client sent.
#[derive(Debug)]
pub enum Decision {
    /// No whole head yet: the loop reads more.
    Partial,
    /// 431: the head is too large or has too many lines.
    TooLarge,
    /// 400 from the parser.
    Malformed,
    Handoff,
    Reject(u16),
    Local {
        head_len: usize,
    },
    Maintenance {
        head_len: usize,
    },
    /// Refused by a drain; `consumed`: the client bytes that request used.
    Drained {
        consumed: usize,
    },
    /// `upstream`: what is written to the service (head and body); `consumed`: the client
    /// bytes that request used.
    Proxy {
        service: String,
        upstream: Vec<u8>,
        consumed: usize,
        body_len: u64,
    },
}

/// `read_head`'s parse of `data`, then `classify` for a client at `peer`.
pub fn request(app: &Arc<App>, data: &[u8], peer: SocketAddr, max_head: usize) -> Decision {
    if data.starts_with(b"PRI ") {
        return Decision::Handoff;
    }
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(data, &mut headers) {
        Ok(httparse::Status::Complete(n)) if n > max_head => return Decision::TooLarge,
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if data.len() > max_head => return Decision::TooLarge,
        Ok(httparse::Status::Partial) => return Decision::Partial,
        Err(httparse::Error::TooManyHeaders) => return Decision::TooLarge,
        Err(_) => return Decision::Malformed,
    };
    let client = Client {
        addr: peer,
        ip: peer.ip().to_string(),
    };
    match classify(app, &req, data, n, &client) {
        Plan::Handoff => Decision::Handoff,
        Plan::Reject(status, _, _) => Decision::Reject(status.as_u16()),
        Plan::Local { head_len, .. } => Decision::Local { head_len },
        Plan::Maintenance { head_len, .. } => Decision::Maintenance { head_len },
        Plan::Drained { consumed, .. } => Decision::Drained { consumed },
        Plan::Proxy(p) => Decision::Proxy {
            service: p.up.name.clone(),
            upstream: p.head,
            consumed: p.head_len,
            body_len: p.body_len,
        },
    }
}

/// How the rewritten response's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// A response head as `proxy` gets it: `head` without its final CRLF, `consumed` the
/// upstream bytes it used (after skipped 1xx heads).
#[derive(Debug)]
pub struct Rewritten {
    /// The 1xx heads passed on to the client before it (`rewrite_interim`), whole.
    pub interim: Vec<Vec<u8>>,
    pub head: Vec<u8>,
    pub consumed: usize,
    pub status: u16,
    pub framing: BodyFraming,
    pub reusable: bool,
}

/// `read_response_head`'s parse of `raw` (1xx heads rewritten as for the client), then
/// `rewrite_response`.
/// `Ok(None)`: no whole head yet.
pub fn response(raw: &[u8], head_only: bool) -> Result<Option<Rewritten>, String> {
    let mut skipped = 0;
    let mut interim = Vec::new();
    loop {
        let data = &raw[skipped..];
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            data,
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(n)) if n > MAX_RESPONSE_HEAD => {
                return Err("too large".into());
            }
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if data.len() > MAX_RESPONSE_HEAD => {
                return Err("too large".into());
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            interim.push(rewrite_interim(&resp, data, n));
            skipped += n;
            continue;
        }
        if status == 101 {
            return Err("switched protocols".into());
        }
        let h = rewrite_response(&resp, data, n, head_only).map_err(|e| format!("{e:?}"))?;
        return Ok(Some(Rewritten {
            interim,
            head: h.out,
            consumed: skipped + h.len,
            status: h.status,
            framing: match h.framing {
                Framing::None => BodyFraming::None,
                Framing::Length(l) => BodyFraming::Length(l),
                Framing::Chunked => BodyFraming::Chunked,
                Framing::UntilClose => BodyFraming::UntilClose,
            },
            reusable: h.reusable,
        }));
    }
}

/// A chunked body fed to one decoder in `parts`, as `proxy` and `relay_chunked` feed it:
/// (body bytes, whether it ended), counted from the first part.
pub fn chunked(parts: &[&[u8]]) -> Result<(usize, bool), &'static str> {
    let mut c = Chunked::default();
    let mut total = 0;
    for p in parts {
        let (used, end) = c.feed(p)?;
        total += used;
        if end {
            return Ok((total, true));
        }
    }
    Ok((total, false))
}
