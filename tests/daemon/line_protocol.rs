//! The line protocol on the control socket (`MAINT_ENTER|session|target|url` and its siblings),
//! as scripts written for the older registry speak it: byte-exact replies to good and bad lines,
//! many lines on one connection, maintenance entered by a line showing in the HTTP API and in
//! `kinfractl status`, the framed protocol unaffected, and peers refused in their own protocol.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::T;
use crate::common::*;

/// A line-protocol connection to kinfrad's control socket.
struct Lines {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Lines {
    fn connect(d: &Daemon) -> Lines {
        let w = UnixStream::connect(&d.control).expect("connect");
        w.set_read_timeout(Some(T)).expect("timeout");
        let r = BufReader::new(w.try_clone().expect("clone"));
        Lines { w, r }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    /// The next reply line, with its `\n`.
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.r.read_until(b'\n', &mut buf).expect("read");
        String::from_utf8(buf).expect("utf-8 reply")
    }

    /// Send `line` and read as many lines as `want` holds; they must be `want`, byte for byte.
    fn expect(&mut self, line: &str, want: &str) {
        self.send(line.as_bytes());
        let got: String = (0..want.matches('\n').count())
            .map(|_| self.line())
            .collect();
        assert_eq!(got, want, "reply to {line:?}");
    }

    /// Everything until kinfrad closes the connection.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.r.read_to_end(&mut v).expect("read to end");
        v
    }
}

fn maint_status(d: &Daemon) -> serde_json::Value {
    get(d.addr, "/api/maintenance/status").json()
}

/// kinfrad in front of one upstream serving two services, `api` (/api) and `web` (/web).
fn two_services() -> (Upstream, Daemon) {
    let up = Upstream::start(0, echo("up"));
    let config = format!(
        "{}{}",
        url_service("api", up.port(), &["/api"], FAST_HEALTH),
        url_service("web", up.port(), &["/web"], FAST_HEALTH)
    );
    let d = start_config(tempfile::tempdir().expect("tmp"), &config, &[]);
    wait_service(&d, "api", "running");
    wait_service(&d, "web", "running");
    (up, d)
}

#[test]
fn line_commands_enter_and_leave_maintenance_on_the_control_socket() {
    let (up, d) = two_services();
    assert_eq!(get(d.addr, "/api/one").status, 200);
    assert_eq!(get(d.addr, "/api/two").status, 200);

    let mut c = Lines::connect(&d);
    c.expect(
        "CIRCUIT_STATUS|abc-123|api\n",
        "maintenance=false hits=0 url= circuit=closed failures=0 health=healthy state=running requests=2 errors=0\n",
    );

    // Seed 002's first example, on the same connection, with a CRLF ending.
    c.expect("MAINT_ENTER|abc-123|ALL|\r\n", "ACK\nMAINT_OK|ALL\n");
    let st = maint_status(&d);
    assert_eq!(st["isActive"], true, "{st}");
    assert_eq!(st["target"], "ALL", "{st}");
    let human = d.ctl_ok(&["status"]);
    assert!(
        human.contains("maintenance: ON") && human.contains("(target ALL)"),
        "{human}"
    );
    assert_eq!(get(d.addr, "/api/three").status, 503);
    c.expect(
        "CIRCUIT_STATUS|abc-123|api\n",
        "maintenance=true hits=1 url= circuit=closed failures=0 health=healthy state=running requests=2 errors=0\n",
    );

    // ALL leaves every record; then one service gets a record of its own, with the operator's
    // page, and the other service is not in maintenance.
    c.expect("MAINT_EXIT|abc-123|ALL\n", "ACK\nMAINT_OK|ALL\n");
    let page = format!("http://{}/maintenance.html", up.addr);
    c.expect(
        &format!("MAINT_ENTER|abc-123|api|{page}\n"),
        "ACK\nMAINT_OK|api\n",
    );
    let st = get(d.addr, "/api/maintenance/status?target=api").json();
    assert_eq!(st["isActive"], true, "{st}");
    assert_eq!(st["target"], "api", "{st}");
    assert_eq!(st["maintenancePageUrl"], page.as_str(), "{st}");
    assert_eq!(
        maint_status(&d)["isActive"],
        false,
        "the global record is off"
    );
    // A freshly entered record starts counting from zero.
    c.expect(
        "CIRCUIT_STATUS|abc-123|api\n",
        &format!(
            "maintenance=true hits=0 url={page} circuit=closed failures=0 health=healthy state=running requests=2 errors=0\n"
        ),
    );
    c.expect(
        "CIRCUIT_STATUS|abc-123|web\n",
        "maintenance=false hits=0 url= circuit=closed failures=0 health=healthy state=running requests=0 errors=0\n",
    );
    assert_eq!(
        get(d.addr, "/web/x").status,
        200,
        "web is not in maintenance"
    );

    // One service's record is left on its own; enter ALL again for what follows.
    c.expect("MAINT_EXIT|abc-123|api\n", "ACK\nMAINT_OK|api\n");
    let st = get(d.addr, "/api/maintenance/status?target=api").json();
    assert_eq!(st["isActive"], false, "{st}");
    c.expect("MAINT_ENTER|abc-123|ALL|\n", "ACK\nMAINT_OK|ALL\n");
    assert_eq!(maint_status(&d)["isActive"], true);
    // A drain over every service, as `kinfractl drain start --duration 60s`: ACK, then when it
    // ends; kinfractl sees the same drain, and stopping it there ends it.
    c.send(b"DRAIN_START|abc-123|60\n");
    assert_eq!(c.line(), "ACK\n");
    let ok = c.line();
    let end = ok
        .strip_prefix("DRAIN_OK|")
        .and_then(|t| t.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("DRAIN_OK line: {ok:?}"));
    let status: serde_json::Value =
        serde_json::from_str(&d.ctl_ok(&["drain", "status", "--json"])).expect("drain status JSON");
    assert_eq!(status["active"], true, "{status}");
    assert_eq!(status["duration_ms"], 60_000, "{status}");
    let end_ms = status["end_time"].as_u64().expect("end_time");
    assert_eq!(end, kinfra::protocol::fmt::iso(end_ms), "{status}");
    d.ctl_ok(&["drain", "stop"]);
    c.expect(
        "CIRCUIT_STATUS|abc-123|nope\n",
        "ERR|not_found|unknown route \"nope\" (known: api, web)\n",
    );
    // A line split over two writes is one line.
    c.send(b"MAINT_");
    std::thread::sleep(Duration::from_millis(50));
    c.expect("EXIT|abc-123|ALL\n", "ACK\nMAINT_OK|ALL\n");
    assert_eq!(maint_status(&d)["isActive"], false);
    let human = d.ctl_ok(&["status"]);
    assert!(human.contains("maintenance: off"), "{human}");
    assert_eq!(get(d.addr, "/api/four").status, 200);
    // Leaving again is a success that changes nothing.
    c.expect("MAINT_EXIT|abc-123|ALL\n", "ACK\nMAINT_OK|ALL\n");

    // The framed protocol on the same socket is untouched.
    let o = d.ctl(&["--json", "status"]);
    assert!(o.status.success());
    drop(up);
}

#[test]
fn bad_lines_get_one_exact_error_line_and_the_connection_stays() {
    let (_up, d) = two_services();
    let mut c = Lines::connect(&d);
    let cases: &[(&[u8], &str)] = &[
        (
            b"REGISTER|svc|inst|0|{}\n",
            "ERR|unknown_command|unknown command \"REGISTER\"; known: MAINT_ENTER, MAINT_EXIT, DRAIN_START, CIRCUIT_STATUS\n",
        ),
        (
            b"MAINT_ENTER|abc-123|ALL\n",
            "ERR|wrong_field_count|MAINT_ENTER takes 4 fields (MAINT_ENTER|session|target|url), got 3\n",
        ),
        (
            b"MAINT_EXIT||ALL\n",
            "ERR|invalid_argument|session is empty\n",
        ),
        (
            b"MAINT_ENTER|abc-123||\n",
            "ERR|invalid_argument|target is empty; give ALL, or services or routes separated by commas\n",
        ),
        // Unknown route ids are the App's own refusal, as kinfractl gets it.
        (
            b"MAINT_ENTER|abc-123|api,nope|\n",
            "ERR|invalid_argument|target: unknown route or service nope (services: api, web; routes: /api, /web; or ALL)\n",
        ),
        (
            b"MAINT_ENTER|abc-123|ALL|javascript:alert(1)\n",
            "ERR|invalid_argument|url: \"javascript\" URLs are not allowed: use an http:// or https:// URL\n",
        ),
        (
            b"DRAIN_START|abc-123|soon\n",
            "ERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"soon\"\n",
        ),
        (
            b"CIRCUIT_STATUS|abc-123|a b\n",
            "ERR|invalid_argument|route \"a b\" may only hold letters, digits, '-', '_' and '.' (64 at most)\n",
        ),
        (
            b"MAINT_EXIT|abc-123|\xff\xfe\n",
            "ERR|bad_line|line is not valid UTF-8\n",
        ),
        (
            b"MAINT_EXIT|abc\x1b[2J|ALL\n",
            "ERR|bad_line|line holds a control character (tab, CR, NUL, ...)\n",
        ),
    ];
    for (line, want) in cases {
        c.send(line);
        assert_eq!(c.line(), *want, "{:?}", String::from_utf8_lossy(line));
    }
    // Blank lines get no answer: the next reply is the next command's.
    c.expect("\n\r\nMAINT_EXIT|abc-123|ALL\n", "ACK\nMAINT_OK|ALL\n");
    // Several lines in one write, answered in order.
    c.expect(
        "CIRCUIT_STATUS|s1|nope\nMAINT_EXIT|s2|ALL\nDRAIN_START|s3|0\n",
        "ERR|not_found|unknown route \"nope\" (known: api, web)\nACK\nMAINT_OK|ALL\nERR|invalid_argument|secs must be a whole number of seconds from 1 to 86400, got \"0\"\n",
    );
    assert_eq!(maint_status(&d)["isActive"], false, "nothing was entered");

    // A line beyond 4096 bytes: one error, then kinfrad closes; cleanly, though most of the
    // line was never read (no reset that would cost a reader the reply).
    let mut c = Lines::connect(&d);
    let long = format!("MAINT_ENTER|s|ALL|http://x/{}\n", "a".repeat(60_000));
    c.send(long.as_bytes());
    assert_eq!(
        String::from_utf8(c.rest()).expect("utf-8"),
        "ERR|line_too_long|line longer than 4096 bytes; closing\n"
    );

    // The last line may lack its newline: it is answered when the peer stops sending.
    let mut c = Lines::connect(&d);
    c.send(b"MAINT_EXIT|abc-123|ALL");
    c.w.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(
        String::from_utf8(c.rest()).expect("utf-8"),
        "ACK\nMAINT_OK|ALL\n"
    );

    // A connection that says nothing is simply held (and closed when idle); kinfrad serves on.
    let _silent = UnixStream::connect(&d.control).expect("connect");
    assert_eq!(get(d.addr, "/health").status, 200);
    assert!(d.ctl(&["status"]).status.success());
}

#[test]
fn line_peers_are_refused_by_credentials_in_their_own_protocol() {
    let Some(dir) = dir_for_other_users("act as other users") else {
        return;
    };
    let python = "/usr/bin/python3";
    if !std::path::Path::new(python).exists() {
        eprintln!("SKIP: needs {python} to speak lines as another user");
        return;
    }
    let cfg = dir.path().join("kinfra.toml");
    std::fs::write(&cfg, "control_group = \"nogroup\"\n").expect("cfg");
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(dir, &["--config", &cfg_s], &[]);
    std::fs::set_permissions(
        &d.control,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    let script = "import socket,sys\n\
        s=socket.socket(socket.AF_UNIX)\n\
        s.connect(sys.argv[1])\n\
        s.sendall(b'MAINT_ENTER|abc-123|ALL|\\n')\n\
        s.shutdown(socket.SHUT_WR)\n\
        sys.stdout.buffer.write(s.makefile('rb').read())\n";
    let as_user = |uid: &str, gid: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                python,
                "-c",
                script,
            ])
            .arg(&d.control)
            .output()
            .expect("setpriv")
    };
    let stranger = as_user("12345", "12345");
    assert_eq!(
        String::from_utf8_lossy(&stranger.stdout),
        "ERR|permission_denied|permission denied for uid 12345 gid 12345: the control socket accepts root, kinfrad's user and members of group 'nogroup'\n",
        "{}",
        String::from_utf8_lossy(&stranger.stderr)
    );
    assert_eq!(maint_status(&d)["isActive"], false);
    // A member of the group is served, as with frames.
    let member = as_user("12345", "65534");
    assert_eq!(
        String::from_utf8_lossy(&member.stdout),
        "ACK\nMAINT_OK|ALL\n",
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert_eq!(maint_status(&d)["isActive"], true);
}
