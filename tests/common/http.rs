//! The tests' one raw HTTP/1.1 client and response reader. Raw, so a test can send what no HTTP
//! library would (ambiguous framing, pipelined batches, bad Host headers) and see exactly what
//! came back: every response is read by [`read_response_with`] (heads by [`read_head`], bodies by
//! [`read_body`], which the fake upstream uses for requests too), whether it comes off a kept-open
//! [`Conn`], out of a buffer ([`responses_in`], [`parse_response`]) or from a one-shot request
//! ([`request`], [`call`], [`get`]).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

/// Header lines as (name, value), in order.
pub type Headers = Vec<(String, String)>;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The first header called `name` (any case).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every header called `name` (any case), in order.
pub fn headers_named<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Does the response say `Connection: close`?
pub fn says_close(r: &Resp) -> bool {
    headers_named(&r.headers, "connection")
        .iter()
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
}

/// Status and headers of `r`, long values cut short (for failure messages).
pub fn brief(r: &Resp) -> String {
    let headers: Vec<String> = r
        .headers
        .iter()
        .map(|(k, v)| match v.get(..60) {
            Some(head) if v.len() > 60 => format!("{k}: {head}… ({} bytes)", v.len()),
            _ => format!("{k}: {v}"),
        })
        .collect();
    format!("{} {headers:?} body {} bytes", r.status, r.body.len())
}

// ---------------------------------------------------------------------------------------------
// Reading: HTTP/1.1 framing, shared by the clients and the fake upstream.

/// Read a head (start line and header lines); `None` at a clean EOF before any byte.
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let mut start = String::new();
    let mut headers = Vec::new();
    let mut total = 0usize;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if start.is_empty() && headers.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "EOF inside a head",
            ));
        }
        total += n;
        if total > 4 << 20 {
            return Err(io::Error::other("head too large"));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if start.is_empty() {
            if text.is_empty() {
                continue;
            }
            start = text.to_string();
        } else if text.is_empty() {
            return Ok(Some((start, headers)));
        } else if let Some((k, v)) = text.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        } else {
            return Err(io::Error::other(format!("bad header line {text:?}")));
        }
    }
}

/// Read exactly `n` bytes, handing them to `f`.
fn read_exact_to(
    r: &mut impl BufRead,
    mut n: u64,
    buf: &mut [u8],
    f: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..want])?;
        f(&buf[..want]);
        n -= want as u64;
    }
    Ok(())
}

/// Read a body framed by `headers` (chunked, Content-Length, or — when `to_eof` — up to EOF),
/// handing it to `f` piece by piece.
pub fn read_body(
    r: &mut impl BufRead,
    headers: &[(String, String)],
    to_eof: bool,
    f: &mut dyn FnMut(&[u8]),
) -> io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let chunked = headers_named(headers, "transfer-encoding")
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "EOF in chunked body",
                ));
            }
            let size_text = line.trim().split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                        return Ok(());
                    }
                }
            }
            read_exact_to(r, size, &mut buf, f)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(cl) = header(headers, "content-length") {
        let n: u64 = cl
            .parse()
            .map_err(|_| io::Error::other(format!("bad Content-Length {cl:?}")))?;
        read_exact_to(r, n, &mut buf, f)
    } else if to_eof {
        loop {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            f(&buf[..n]);
        }
    } else {
        Ok(())
    }
}

/// Read one response; the body goes to `on_body` (and is not kept in the returned `Resp`).
pub fn read_response_with(
    r: &mut impl BufRead,
    head_request: bool,
    on_body: &mut dyn FnMut(&[u8]),
) -> io::Result<Resp> {
    let Some((start, headers)) = read_head(r)? else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    };
    let status: u16 = start
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {start:?}")))?;
    let no_body = head_request || status < 200 || status == 204 || status == 304;
    if !no_body {
        read_body(r, &headers, true, on_body)?;
    }
    Ok(Resp {
        status,
        headers,
        body: Vec::new(),
    })
}

/// Read one response, keeping its body.
pub fn read_response(r: &mut impl BufRead) -> io::Result<Resp> {
    let mut body = Vec::new();
    let mut resp = read_response_with(r, false, &mut |b| body.extend_from_slice(b))?;
    resp.body = body;
    Ok(resp)
}

/// Every complete response in `buf`, in order.
pub fn responses_in(buf: &[u8]) -> Vec<Resp> {
    let mut r = buf;
    let mut out = Vec::new();
    while let Ok(resp) = read_response(&mut r) {
        out.push(resp);
    }
    out
}

/// The first response in `buf`, if it is complete.
pub fn parse_response(buf: &[u8]) -> Option<Resp> {
    read_response(&mut &buf[..]).ok()
}

/// The first status code in `out`, when it starts with an HTTP/1.1 status line.
pub fn first_status(out: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(out);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Clients.

/// Send raw bytes and read the whole answer (the request should say `Connection: close`).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// The bytes of one request: the Host header given (`None`: `addr`), `Connection: close` unless
/// `headers` hold a Connection header of their own, then `headers`, and a Content-Length when
/// there is a body or the method is POST.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
        host.map(str::to_string).unwrap_or_else(|| addr.to_string())
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Send `bytes` on a fresh connection and read one response, framed by its own headers, without
/// waiting for the server to close (for servers that keep the socket open after answering).
pub fn send_and_read(addr: SocketAddr, bytes: &[u8], read_for: Duration) -> io::Result<Resp> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(read_for))?;
    s.write_all(bytes)?;
    read_response(&mut BufReader::new(s))
}

/// One request on a fresh connection, with the Host header given (`None`: `addr`); the first
/// response of everything that came back before the server closed the connection.
pub fn request_to(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    let out = raw(
        addr,
        &request_bytes(addr, method, path, host, headers, body),
    )?;
    parse_response(&out).ok_or_else(|| {
        io::Error::other(format!(
            "no complete response in {:?}",
            String::from_utf8_lossy(&out)
        ))
    })
}

/// One HTTP request over a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Resp> {
    request_to(addr, method, path, None, headers, body)
}

/// [`request_to`] that must get an answer.
pub fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    request_to(addr, method, path, host, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

pub fn get_html(addr: SocketAddr, path: &str) -> Resp {
    request(
        addr,
        "GET",
        path,
        &[("Accept", "text/html,application/xhtml+xml")],
        b"",
    )
    .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// `GET target` on a fresh connection with `Host: host` (any text, as a client could send it)
/// and `Connection: close`; `target` may be absolute-form (`http://name/path`).
pub fn get_with_host(addr: SocketAddr, target: &str, host: &str, headers: &[(&str, &str)]) -> Resp {
    request_to(addr, "GET", target, Some(host), headers, b"")
        .unwrap_or_else(|e| panic!("GET {target} ({host}): {e}"))
}

/// `GET path` asking for JSON.
pub fn json_get(addr: SocketAddr, path: &str) -> Resp {
    call(
        addr,
        "GET",
        path,
        None,
        &[("Accept", "application/json")],
        b"",
    )
}

/// `GET path` as a browser asks for a page.
pub fn html_get(addr: SocketAddr, path: &str) -> Resp {
    call(
        addr,
        "GET",
        path,
        None,
        &[("Accept", "text/html,application/xhtml+xml")],
        b"",
    )
}

/// A client connection that is kept open across requests.
pub struct Conn {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let w = s.try_clone().expect("clone");
        Conn {
            r: BufReader::with_capacity(256 * 1024, s),
            w,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write request");
    }

    pub fn response(&mut self) -> Resp {
        read_response(&mut self.r).expect("read response")
    }

    /// The final response, after any 1xx interim ones.
    pub fn final_response(&mut self) -> Resp {
        loop {
            let r = self.response();
            if r.status >= 200 {
                return r;
            }
        }
    }

    /// The response to a HEAD request (a head only, whatever its Content-Length says).
    pub fn head_response(&mut self) -> Resp {
        read_response_with(&mut self.r, true, &mut |_| {}).expect("read HEAD response")
    }

    /// Did the server close the connection (EOF or reset) within `within`, with no bytes left
    /// unread? Bytes after the last response are a failure of their own.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        assert!(
            self.r.buffer().is_empty(),
            "unexpected bytes after the response: {:?}",
            String::from_utf8_lossy(self.r.buffer())
        );
        let s = self.r.get_mut();
        s.set_read_timeout(Some(within)).expect("timeout");
        let mut b = [0u8; 256];
        let closed = match s.read(&mut b) {
            Ok(0) => true,
            Ok(n) => panic!(
                "unexpected bytes after the response: {:?}",
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) => !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
        };
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        closed
    }
}

/// Write `head`, then let `body` write the rest from another thread while this one reads
/// whatever comes back until EOF, a reset or `read_for` of silence. Also says whether the
/// server closed the connection (EOF or reset) rather than going silent.
pub fn exchange(
    addr: SocketAddr,
    head: &[u8],
    read_for: Duration,
    body: impl FnOnce(&mut TcpStream) -> io::Result<()> + Send + 'static,
) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(read_for)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let head = head.to_vec();
    let writer = thread::spawn(move || {
        if w.write_all(&head).is_ok() {
            let _ = body(&mut w);
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
            }
        }
    };
    let _ = s.shutdown(Shutdown::Both);
    let _ = writer.join();
    (out, closed)
}
