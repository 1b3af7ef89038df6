//! The ways to control kinfrad: the control socket (hostile input gets errors and the daemon
//! keeps serving; peers are checked by their credentials), kinfractl's refusal of bad values, and
//! the HTTP API with its admin token.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(payload);
    v
}

fn read_answer(s: &mut UnixStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("len");
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).expect("body");
    serde_json::from_slice(&buf).expect("json")
}

fn hello(s: &mut UnixStream) {
    s.write_all(&frame(br#"{"type":"hello","protocol":1,"client":"test"}"#))
        .expect("w");
    assert_eq!(read_answer(s)["type"], "hello");
}

#[test]
fn hostile_control_input_gets_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start();
    let connect = || {
        let s = UnixStream::connect(&d.control).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    };

    // No hello first.
    let mut s = connect();
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "handshake_required");

    // Wrong version.
    let mut s = connect();
    s.write_all(&frame(
        br#"{"type":"hello","protocol":99,"client":"future"}"#,
    ))
    .expect("w");
    let a = read_answer(&mut s);
    assert_eq!(a["code"], "unsupported_version");

    // Garbage, unknown type, wrong field types: errors, and the connection stays usable.
    let mut s = connect();
    hello(&mut s);
    s.write_all(&frame(b"\x00\xffnot json")).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"format_disk"}"#))
        .expect("w");
    let a = read_answer(&mut s);
    assert_eq!(a["code"], "bad_request");
    assert!(
        a["message"].as_str().expect("msg").contains("format_disk"),
        "{a}"
    );
    s.write_all(&frame(br#"{"no_type":true}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"maint_enter","countdown_secs":"soon"}"#))
        .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "bad_request");
    s.write_all(&frame(br#"{"type":"maint_enter","countdown_secs":-10}"#))
        .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "invalid_argument");
    s.write_all(&frame(
        br#"{"type":"maint_enter","url":"file:///etc/passwd"}"#,
    ))
    .expect("w");
    assert_eq!(read_answer(&mut s)["code"], "invalid_argument");
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["type"], "status");

    // Oversized frame: error, then the connection is closed.
    let mut s = connect();
    hello(&mut s);
    s.write_all(&(10_000_000u32).to_be_bytes()).expect("w");
    assert_eq!(read_answer(&mut s)["code"], "frame_too_large");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());

    // Error messages that would echo more than one frame holds are cut, not dropped: the
    // connection answers and stays usable. (Each '"' is escaped twice on the way back: once in
    // the message, once in the JSON, so these 60 KB requests would make 120 KB answers.)
    let mut s = connect();
    hello(&mut s);
    let quotes = "\\\"".repeat(30_000);
    for (payload, needle) in [
        (format!(r#"{{"type":"{quotes}"}}"#), "unknown request type"),
        (
            format!(r#"{{"type":"maint_enter","countdown_secs":"{quotes}"}}"#),
            "malformed request",
        ),
    ] {
        assert!(payload.len() < 65_536, "{}", payload.len());
        s.write_all(&frame(payload.as_bytes())).expect("w");
        let a = read_answer(&mut s);
        assert_eq!(a["code"], "bad_request", "{a}");
        let msg = a["message"].as_str().expect("message");
        assert!(msg.starts_with(needle), "{msg:.200}");
        assert!(msg.len() < 4096, "{} bytes", msg.len());
    }
    s.write_all(&frame(br#"{"type":"status"}"#)).expect("w");
    assert_eq!(read_answer(&mut s)["type"], "status");

    // Truncated frame then hang-up, and a silent connection: nothing breaks.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 50, b'{']).expect("w");
    drop(s);
    let _idle = connect();

    // Still serving both doors, and no maintenance was entered by any of it.
    assert_eq!(get(d.addr, "/health").status, 200);
    let st = status_json(&d);
    assert_eq!(st["maintenance"]["isActive"], false);
}

#[test]
fn cli_refuses_bad_values_with_clear_errors() {
    let d = Daemon::start();
    let self_url = format!("http://{}/maint", d.addr);
    let self_localhost = format!("http://localhost:{}/", d.addr.port());
    let self_mapped = format!("http://[::ffff:127.0.0.1]:{}/", d.addr.port());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["maint", "enter", "--countdown", "-1"], "negative"),
        (
            vec!["maint", "enter", "--countdown", "99999999999"],
            "30 day",
        ),
        (vec!["maint", "enter", "--time", "100000"], "30 day"),
        (
            vec!["maint", "enter", "--url", "javascript:alert(1)"],
            "http://",
        ),
        (
            vec!["maint", "enter", "--url", "file:///etc/passwd"],
            "http://",
        ),
        (vec!["maint", "enter", "--url", &self_url], "itself"),
        (vec!["maint", "enter", "--url", &self_localhost], "itself"),
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        (vec!["maint", "enter", "--url", &self_mapped], "itself"),
        // Beyond u16: once taken for port 80.
        (
            vec!["maint", "enter", "--url", "http://127.0.0.1:70000/"],
            "port",
        ),
        (
            vec!["maint", "enter", "--url", "http://127.0.0.1:0/"],
            "port",
        ),
        // A name that does not resolve cannot be checked, nor fetched.
        (
            vec!["maint", "enter", "--url", "http://no-such-host.invalid/"],
            "does not resolve",
        ),
        (vec!["maint", "enter", "--target", "api"], "unknown route"),
        (
            vec!["maint", "enter", "--message", "bell\u{7}"],
            "control characters",
        ),
    ];
    for (args, needle) in cases {
        let o = d.ctl(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    // Usage errors exit 2.
    assert_eq!(
        d.ctl(&["maint", "enter", "--countdown", "ten"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(d.ctl(&["frobnicate"]).status.code(), Some(2));
    // --json errors are JSON on stdout.
    let o = d.ctl(&["--json", "maint", "enter", "--countdown", "-1"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json error");
    assert_eq!(j["error"]["code"], "invalid_argument");
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );

    // Unreachable daemon: exit 3, one line naming where it looked and what to try.
    let o = Command::new(kinfractl())
        .args(["--socket", "/nonexistent/kinfra.sock", "status"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("/nonexistent/kinfra.sock") && err.contains("systemctl status kinfra"),
        "{err}"
    );
    // KINFRA_SOCKET is honoured.
    let o = Command::new(kinfractl())
        .env("KINFRA_SOCKET", &d.control)
        .arg("status")
        .output()
        .expect("run");
    assert!(o.status.success());
}

#[test]
fn http_api_needs_the_token_and_validates_input() {
    let d = Daemon::start();
    let token = d.token();
    assert_eq!(token.len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.state_dir.join("admin-token"))
            .expect("meta")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let auth = format!("Bearer {token}");
    let post = |body: &str, auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        request(
            d.addr,
            "POST",
            "/api/maintenance/status",
            &h,
            body.as_bytes(),
        )
        .expect("post")
    };
    let r = post(r#"{"isActive":true}"#, None);
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(
        post(r#"{"isActive":true}"#, Some("Bearer wrong")).status,
        401
    );
    // A change while inactive is kept for the next window (seed 004 scripts), not refused.
    let r = post(r#"{"message":"x"}"#, Some(&auth));
    assert_eq!(r.status, 200, "update while inactive: {}", r.text());
    assert_eq!(r.json()["state"]["isActive"], false);
    assert_eq!(r.json()["state"]["prepared"], true);
    assert_eq!(post("{not json", Some(&auth)).status, 400);
    assert_eq!(
        post(r#"{"isActive":true,"countdown":-5}"#, Some(&auth)).status,
        400
    );
    assert_eq!(
        post(r#"{"isActive":true,"bogus":1}"#, Some(&auth)).status,
        400
    );
    assert_eq!(
        post(
            r#"{"isActive":true,"maintenancePageUrl":"javascript:x"}"#,
            Some(&auth)
        )
        .status,
        400
    );
    // The HTTP API validates a page URL as kinfractl does.
    for url in [
        "http://127.0.0.1:70000/".to_string(),
        "http://no-such-host.invalid/".to_string(),
        format!("http://[::ffff:127.0.0.1]:{}/", d.addr.port()),
    ] {
        let body = serde_json::json!({"isActive": true, "maintenancePageUrl": url}).to_string();
        let r = post(&body, Some(&auth));
        assert_eq!(r.status, 400, "{url}: {}", r.text());
        assert_eq!(
            r.json()["error"]["code"],
            "invalid_argument",
            "{}",
            r.text()
        );
    }
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false,
        "nothing changed"
    );
    let big = format!(r#"{{"isActive":true,"message":"{}"}}"#, "x".repeat(100_000));
    assert_eq!(post(&big, Some(&auth)).status, 413);

    let r = post(
        r#"{"isActive":true,"message":"Via API","currentIssue":"Task","countdown":300}"#,
        Some(&auth),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["success"], true);
    for key in [
        "isActive",
        "message",
        "currentIssue",
        "countdown",
        "startTime",
        "estimatedCompletion",
    ] {
        assert!(j["state"].get(key).is_some(), "state lacks {key}: {j}");
    }
    assert_eq!(j["state"]["message"], "Via API");
    let eta = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("now")
        .as_millis() as u64)
        + 120_000;
    let r = post(&format!(r#"{{"estimatedCompletion":{eta}}}"#), Some(&auth));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["state"]["estimatedCompletion"], eta);
    assert_eq!(
        post(r#"{"estimatedCompletion":1000}"#, Some(&auth)).status,
        400,
        "past ETA"
    );
    assert_eq!(post(r#"{"isActive":false}"#, Some(&auth)).status, 200);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["isActive"],
        false
    );

    let h = get(d.addr, "/health").json();
    assert_eq!(h["status"], "ok");
    assert!(h["uptime"].as_f64().is_some() && h["connections"].as_u64().is_some());
    assert_eq!(get(d.addr, "/api/nope").status, 404);
}

#[test]
fn control_socket_checks_peer_credentials() {
    let Some(dir) = dir_for_other_users("act as other users") else {
        return;
    };
    let cfg = dir.path().join("kinfra.toml");
    std::fs::write(&cfg, "control_group = \"nogroup\"\n").expect("cfg");
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(dir, &["--config", &cfg_s], &[]);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&d.control).expect("meta").permissions(),
    );
    assert_eq!(mode & 0o777, 0o660, "control socket mode");
    // Open the file mode so that only the SO_PEERCRED check stands in the way.
    std::fs::set_permissions(
        &d.control,
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .expect("chmod");
    let as_user = |uid: &str, gid: &str| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={uid}"),
                &format!("--regid={gid}"),
                "--clear-groups",
                kinfractl(),
                "--socket",
            ])
            .arg(&d.control)
            .arg("status")
            .output()
            .expect("setpriv")
    };
    let stranger = as_user("12345", "12345");
    assert_eq!(stranger.status.code(), Some(1), "{stranger:?}");
    let err = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        err.contains("permission denied") && err.contains("nogroup"),
        "{err}"
    );
    let member = as_user("12345", "65534");
    assert!(
        member.status.success(),
        "{}",
        String::from_utf8_lossy(&member.stderr)
    );
    assert!(d.log_text().contains("control connection refused"));
}
