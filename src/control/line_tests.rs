//! Unit tests of the line protocol's parser, framing and replies: every bad line's reply byte
//! for byte, and random bytes that must never panic nor produce more than one reply line.

use super::*;

fn reply_of(line: &[u8]) -> String {
    match parse(line) {
        Ok(Some(c)) => panic!("{line:?} parsed as {c:?}"),
        Ok(None) => String::new(),
        Err(r) => String::from_utf8(r.encode()).expect("utf-8"),
    }
}

fn cmd(line: &str) -> Command {
    match parse(line.as_bytes()) {
        Ok(Some(c)) => c,
        other => panic!("{line:?}: {other:?}"),
    }
}

#[test]
fn good_lines_parse_with_or_without_cr() {
    for end in ["", "\r"] {
        assert_eq!(
            cmd(&format!(
                "MAINT_ENTER|abc-123|ALL|https://status.example.com/maintenance{end}"
            )),
            Command::MaintEnter {
                session: "abc-123".into(),
                target: "ALL".into(),
                url: "https://status.example.com/maintenance".into(),
            }
        );
    }
    // An empty URL means the default page; targets are normalized.
    assert_eq!(
        cmd("MAINT_ENTER|abc-123|all|"),
        Command::MaintEnter {
            session: "abc-123".into(),
            target: "ALL".into(),
            url: String::new(),
        }
    );
    assert_eq!(
        cmd("MAINT_EXIT|s|api, web,api"),
        Command::MaintExit {
            session: "s".into(),
            target: "api,web".into(),
        }
    );
    assert_eq!(
        cmd("DRAIN_START|session-123|60"),
        Command::DrainStart {
            session: "session-123".into(),
            secs: 60,
        }
    );
    assert_eq!(
        cmd("CIRCUIT_STATUS|session-id|api.v1"),
        Command::CircuitStatus {
            session: "session-id".into(),
            route: "api.v1".into(),
        }
    );
    // Blank lines get no answer.
    assert_eq!(parse(b""), Ok(None));
    assert_eq!(parse(b"\r"), Ok(None));
}

#[test]
fn bad_lines_get_one_exact_error_line() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"HELLO|x",
            "ERR|unknown_command|unknown command \"HELLO\"; known: MAINT_ENTER, MAINT_EXIT, DRAIN_START, CIRCUIT_STATUS\n",
        ),
        (
            b"maint_enter|s|ALL|",
            "ERR|unknown_command|unknown command \"maint_enter\"; known: MAINT_ENTER, MAINT_EXIT, DRAIN_START, CIRCUIT_STATUS\n",
        ),
        (
            b"MAINT_ENTER|s|ALL",
            "ERR|wrong_field_count|MAINT_ENTER takes 4 fields (MAINT_ENTER|session|target|url), got 3\n",
        ),
        (
            b"MAINT_ENTER|s|ALL|http://a/|extra",
            "ERR|wrong_field_count|MAINT_ENTER takes 4 fields (MAINT_ENTER|session|target|url), got 5\n",
        ),
        (
            b"MAINT_EXIT",
            "ERR|wrong_field_count|MAINT_EXIT takes 3 fields (MAINT_EXIT|session|target), got 1\n",
        ),
        (
            b"DRAIN_START|s",
            "ERR|wrong_field_count|DRAIN_START takes 3 fields (DRAIN_START|session|secs), got 2\n",
        ),
        (
            b"CIRCUIT_STATUS|s|a|b",
            "ERR|wrong_field_count|CIRCUIT_STATUS takes 3 fields (CIRCUIT_STATUS|session|route), got 4\n",
        ),
        (
            b"MAINT_ENTER||ALL|",
            "ERR|invalid_argument|session is empty\n",
        ),
        (
            b"MAINT_EXIT|a b|ALL",
            "ERR|invalid_argument|session \"a b\" may hold at most 128 printable ASCII characters, without spaces\n",
        ),
        (
            b"MAINT_ENTER|s||",
            "ERR|invalid_argument|target is empty; give ALL, or services or routes separated by commas\n",
        ),
        (
            b"MAINT_EXIT|s|  ",
            "ERR|invalid_argument|target is empty; give ALL, or services or routes separated by commas\n",
        ),
        (
            b"MAINT_ENTER|s|api,,web|",
            "ERR|invalid_argument|target: target \"api,,web\" has an empty entry\n",
        ),
        (
            b"MAINT_ENTER|s|a b|",
            "ERR|invalid_argument|target: \"a b\" is neither a service name (letters, digits, '-', '_' and '.', 64 at most) nor a route (\"[host]/prefix\")\n",
        ),
        (
            b"DRAIN_START|s|0",
            "ERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"0\"\n",
        ),
        (
            b"DRAIN_START|s|60s",
            "ERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"60s\"\n",
        ),
        (
            b"DRAIN_START|s|+60",
            "ERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"+60\"\n",
        ),
        (
            b"DRAIN_START|s|86401",
            "ERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"86401\"\n",
        ),
        (
            b"CIRCUIT_STATUS|s|",
            "ERR|invalid_argument|route is empty\n",
        ),
        (
            b"CIRCUIT_STATUS|s|a b",
            "ERR|invalid_argument|route \"a b\" may only hold letters, digits, '-', '_' and '.' (64 at most)\n",
        ),
        (
            b"MAINT_EXIT|s|\xff",
            "ERR|bad_line|line is not valid UTF-8\n",
        ),
        (
            b"MAINT_EXIT|s|ALL\x00",
            "ERR|bad_line|line holds a control character (tab, CR, NUL, ...)\n",
        ),
        (
            b"MAINT_EXIT|s\r|ALL",
            "ERR|bad_line|line holds a control character (tab, CR, NUL, ...)\n",
        ),
        (
            b"MAINT_EXIT|s|ALL\r\r",
            "ERR|bad_line|line holds a control character (tab, CR, NUL, ...)\n",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(reply_of(line), *want, "{:?}", String::from_utf8_lossy(line));
    }
    // Echoed text is cut and quoted.
    let long = format!("{}|x", "X".repeat(5000));
    let r = reply_of(long.as_bytes());
    assert!(
        r.starts_with("ERR|unknown_command|unknown command \"XXX"),
        "{r}"
    );
    assert!(r.len() < 200, "{}", r.len());
    let sess = format!("MAINT_EXIT|{}|ALL", "s".repeat(129));
    assert!(reply_of(sess.as_bytes()).contains("at most 128"));
    assert!(parse(format!("MAINT_EXIT|{}|ALL", "s".repeat(128)).as_bytes()).is_ok());
}

#[test]
fn replies_are_exact_and_never_break_lines() {
    assert_eq!(
        Reply::MaintOk("ALL".into()).encode(),
        b"ACK\nMAINT_OK|ALL\n"
    );
    assert_eq!(
        Reply::DrainOk("2026-01-01T00:01:00Z".into()).encode(),
        b"ACK\nDRAIN_OK|2026-01-01T00:01:00Z\n"
    );
    assert_eq!(
        Reply::Status("maintenance=false hits=0 url=".into()).encode(),
        b"maintenance=false hits=0 url=\n"
    );
    // A message (an App error can quote stored text) never injects a line.
    assert_eq!(
        Reply::err("internal", "a\nMAINT_OK|ALL\r\nb").encode(),
        b"ERR|internal|a MAINT_OK|ALL  b\n"
    );
    let long = Reply::err("internal", "é".repeat(1000)).encode();
    assert!(long.len() <= "ERR|internal|".len() + 512 + "…\n".len());
    assert!(long.ends_with("…\n".as_bytes()));
    let op = crate::app::OpError::new(crate::protocol::ErrorCode::NotInMaintenance, "off");
    assert_eq!(Reply::from(op).encode(), b"ERR|not_in_maintenance|off\n");
}

#[test]
fn lines_are_cut_at_the_limit() {
    let max = "M".repeat(MAX_LINE);
    for end in ["\n", "\r\n"] {
        let buf = format!("{max}{end}");
        assert_eq!(
            cut_line(buf.as_bytes()),
            Cut::Line(buf.trim_end_matches('\n').as_bytes())
        );
    }
    assert_eq!(cut_line(format!("{max}M\n").as_bytes()), Cut::TooLong);
    // What a reader bounded at READ_LIMIT returns for a longer line: no newline in sight.
    assert_eq!(cut_line("M".repeat(READ_LIMIT).as_bytes()), Cut::TooLong);
    assert_eq!(
        cut_line(format!("{max}\r").as_bytes()),
        Cut::Line(format!("{max}\r").as_bytes())
    );
    // The last line of a connection may lack its newline.
    assert_eq!(
        cut_line(b"MAINT_EXIT|s|ALL"),
        Cut::Line(b"MAINT_EXIT|s|ALL")
    );
    assert_eq!(cut_line(b"\n"), Cut::Line(b""));
}

#[test]
fn only_letters_start_lines_and_no_frame_starts_with_one() {
    assert!(starts_line(b'M') && starts_line(b'D') && starts_line(b'C') && starts_line(b'm'));
    assert!(!starts_line(0) && !starts_line(b'{') && !starts_line(b'\n') && !starts_line(0xff));
    // A frame whose length starts with a letter byte would be far beyond the largest frame.
    assert!(u32::from_be_bytes([b'A', 0, 0, 0]) as usize > crate::protocol::MAX_FRAME);
}

/// xorshift64*: a repeatable stream of pseudo-random numbers, enough for input fuzzing.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_one(line: &[u8]) {
    if let Cut::Line(l) = cut_line(line) {
        match parse(l) {
            Ok(None) => {}
            Ok(Some(c)) => {
                let texts: Vec<&str> = match &c {
                    Command::MaintEnter {
                        session,
                        target,
                        url,
                    } => vec![session, target, url],
                    Command::MaintExit { session, target } => vec![session, target],
                    Command::DrainStart { session, .. } => vec![session],
                    Command::CircuitStatus { session, route } => vec![session, route],
                };
                for t in texts {
                    assert!(
                        !t.contains('|') && !t.chars().any(char::is_control),
                        "{t:?}"
                    );
                }
            }
            Err(r) => {
                let out = r.encode();
                assert!(out.starts_with(b"ERR|"), "{out:?}");
                assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "{out:?}");
                assert!(out.ends_with(b"\n") && !out.contains(&b'\r'), "{out:?}");
                assert!(std::str::from_utf8(&out).is_ok());
                assert!(out.len() < 700, "{}", out.len());
            }
        }
    }
}

#[test]
fn random_bytes_never_panic_and_get_at_most_one_line() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds: [&[u8]; 6] = [
        b"MAINT_ENTER|abc-123|ALL|https://status.example.com/m",
        b"MAINT_EXIT|abc-123|ALL",
        b"DRAIN_START|abc-123|60",
        b"CIRCUIT_STATUS|abc-123|api",
        b"MAINT_ENTER|s|api,web|",
        b"|||\r\n",
    ];
    let alphabet: &[u8] = b"|,\r\n\x00\xff\xc3\xa9 AZaz09-_.:/ALLMAINT_";
    for _ in 0..20_000 {
        let mut v = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..rng.below(6) {
            let pos = rng.below(v.len() + 1);
            match rng.below(4) {
                0 if !v.is_empty() && pos < v.len() => {
                    v.remove(pos);
                }
                1 => v.insert(pos, alphabet[rng.below(alphabet.len())]),
                2 => v.insert(pos, rng.next() as u8),
                _ => {
                    let n = rng.below(8);
                    let at = rng.below(v.len() + 1);
                    let chunk: Vec<u8> = v[at..(at + n).min(v.len())].to_vec();
                    v.splice(pos..pos, chunk);
                }
            }
        }
        check_one(&v);
        // And pure noise of any length, up to beyond the limit.
        let n = rng.below(64) + if rng.below(50) == 0 { MAX_LINE } else { 0 };
        let noise: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        check_one(&noise);
    }
}
