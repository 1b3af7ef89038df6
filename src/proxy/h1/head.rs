//! Header lines: the names the fast path acts on, `Connection` tokens, kept lines, values.

/// The route key of the common Host value, without allocating: a lower-case name or IPv4
/// address (letters, digits, '-', '.', '_') with an optional numeric port. Anything else
/// (upper case, IPv6, odd characters) is for `answers::parse_host`.
pub(super) fn plain_host(h: &[u8]) -> Option<&str> {
    let name_len = h
        .iter()
        .position(|b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_'))
        .unwrap_or(h.len());
    if name_len == 0 {
        return None;
    }
    if let Some(rest) = h.get(name_len..).filter(|r| !r.is_empty()) {
        let port = rest.strip_prefix(b":")?;
        if port.is_empty() || port.len() > 5 {
            return None;
        }
        let value = port.iter().try_fold(0u32, |v, &b| {
            b.is_ascii_digit().then(|| v * 10 + u32::from(b - b'0'))
        })?;
        if value > u32::from(u16::MAX) {
            return None;
        }
    }
    // ASCII by construction.
    std::str::from_utf8(&h[..name_len]).ok()
}

/// The header names the fast path acts on, told apart by length first: most names match no
/// length here and cost one comparison.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Hdr {
    Other,
    Host,
    Date,
    Accept,
    Expect,
    Cookie,
    ContentLength,
    XForwardedFor,
    XForwardedHost,
    XForwardedProto,
    Connection,
    TransferEncoding,
    Upgrade,
    /// The other hop-by-hop names (RFC 9110 §7.6.1): keep-alive, te, trailer, proxy-*.
    Hop,
}

impl Hdr {
    pub(super) fn of(name: &str) -> Hdr {
        let Some(&c) = name.as_bytes().first() else {
            return Hdr::Other;
        };
        // Length and first letter pick the one name worth comparing.
        let (kind, want) = match (name.len(), c | 0x20) {
            (2, b't') => (Hdr::Hop, "te"),
            (4, b'h') => (Hdr::Host, "host"),
            (4, b'd') => (Hdr::Date, "date"),
            (6, b'a') => (Hdr::Accept, "accept"),
            (6, b'e') => (Hdr::Expect, "expect"),
            (6, b'c') => (Hdr::Cookie, "cookie"),
            (7, b'u') => (Hdr::Upgrade, "upgrade"),
            (7, b't') => (Hdr::Hop, "trailer"),
            (10, b'c') => (Hdr::Connection, "connection"),
            (10, b'k') => (Hdr::Hop, "keep-alive"),
            (14, b'c') => (Hdr::ContentLength, "content-length"),
            (15, b'x') => (Hdr::XForwardedFor, "x-forwarded-for"),
            (16, b'x') => (Hdr::XForwardedHost, "x-forwarded-host"),
            (16, b'p') => (Hdr::Hop, "proxy-connection"),
            (17, b't') => (Hdr::TransferEncoding, "transfer-encoding"),
            (17, b'x') => (Hdr::XForwardedProto, "x-forwarded-proto"),
            (18, b'p') => (Hdr::Hop, "proxy-authenticate"),
            (19, b'p') => (Hdr::Hop, "proxy-authorization"),
            _ => return Hdr::Other,
        };
        // `want` is lower case; OR-ing 0x20 lower-cases a letter and changes no other token
        // character into a letter or '-' (header names are tokens, checked by the parser).
        let differ = name
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | ((a | 0x20) ^ b));
        if differ == 0 { kind } else { Hdr::Other }
    }

    /// Hop-by-hop: never forwarded in either direction.
    pub(super) fn hop(self) -> bool {
        matches!(
            self,
            Hdr::Hop | Hdr::Connection | Hdr::TransferEncoding | Hdr::Upgrade
        )
    }
}

/// Hop-by-hop header names (RFC 9110 §7.6.1), never forwarded in either direction.
pub(super) fn is_hop(name: &str) -> bool {
    Hdr::of(name).hop()
}

/// The tokens of a message's `Connection` headers: `close` and `upgrade` noted, and every
/// token other than `keep-alive` (a hop-by-hop name anyway) kept as a header name to drop.
/// Most messages say only `keep-alive` or `close`, so the per-header check is usually empty.
#[derive(Default)]
pub(super) struct ConnTokens<'a> {
    pub(super) close: bool,
    pub(super) upgrade: bool,
    pub(super) named: Vec<&'a [u8]>,
}

impl<'a> ConnTokens<'a> {
    pub(super) fn add(&mut self, value: &'a [u8]) {
        // The usual values, as most clients and servers spell them.
        match value {
            b"keep-alive" | b"Keep-Alive" => return,
            b"close" => {
                self.close = true;
                self.named.push(value);
                return;
            }
            _ => {}
        }
        for t in value.split(|b| *b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"keep-alive") || t.is_empty() {
                continue;
            }
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
            self.named.push(t);
        }
    }

    /// Is `name` listed (so hop-by-hop for this message)?
    // Called per request from another h1 file: inlined there as when h1 was one file.
    #[inline]
    pub(super) fn names(&self, name: &str) -> bool {
        !self.named.is_empty()
            && self
                .named
                .iter()
                .any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Copies kept header lines from the raw head they were parsed from: neighbouring lines go out
/// in one copy (the CRLF between them verified), instead of four small copies per line.
pub(super) struct Lines<'a> {
    raw: &'a [u8],
    /// The span of raw lines not yet copied (without the last line's CRLF).
    run: Option<(usize, usize)>,
}

impl<'a> Lines<'a> {
    pub(super) fn new(raw: &'a [u8]) -> Lines<'a> {
        Lines { raw, run: None }
    }

    /// Where `h`'s line (name to end of value) sits in `raw`, if it does.
    fn span(&self, h: &httparse::Header<'_>) -> Option<(usize, usize)> {
        let base = self.raw.as_ptr() as usize;
        let start = (h.name.as_ptr() as usize).checked_sub(base)?;
        let end = (h.value.as_ptr() as usize)
            .checked_sub(base)?
            .checked_add(h.value.len())?;
        (!h.value.is_empty() && start < end && end <= self.raw.len()).then_some((start, end))
    }

    /// Forward `h` (after those kept before it).
    pub(super) fn keep(&mut self, out: &mut Vec<u8>, h: &httparse::Header<'_>) {
        let Some((start, end)) = self.span(h) else {
            self.flush(out);
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
            return;
        };
        if let Some((from, to)) = self.run {
            if start == to + 2 && self.raw.get(to..start) == Some(&b"\r\n"[..]) {
                self.run = Some((from, end));
                return;
            }
            self.flush(out);
        }
        self.run = Some((start, end));
    }

    /// Copy what is kept so far; before anything else is written to `out`.
    pub(super) fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some((from, to)) = self.run.take() {
            out.extend_from_slice(&self.raw[from..to]);
            out.extend_from_slice(b"\r\n");
        }
    }
}

pub(super) fn parse_len(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    // At most 19 digits: no overflow.
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}
