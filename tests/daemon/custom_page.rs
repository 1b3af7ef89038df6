//! The operator's own maintenance page (`maint enter --url`): proxied with its own status, falling
//! back to the built-in page when it is down, and over HTTPS verified against
//! `upstream_ca_file`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::T;
use crate::common::*;

/// A tiny upstream (the harness's fake one) that records each request's head as text and
/// answers 200 with its own page; a message on the sender stops it.
fn custom_page_server() -> (
    SocketAddr,
    Arc<Mutex<Vec<String>>>,
    std::sync::mpsc::Sender<()>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let up = {
        let seen = seen.clone();
        Upstream::start(0, move |s: &Seen| {
            seen.lock().expect("lock").push(s.head_text());
            let body = "<h1>Our own maintenance page</h1>";
            Reply::raw(
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).as_bytes(),
                After::Close,
            )
        })
    };
    let addr = up.addr;
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        // A message, or the test dropping the sender, stops the upstream.
        let _ = stop_rx.recv();
        drop(up);
    });
    (addr, seen, stop_tx)
}

#[test]
fn custom_maintenance_url_is_proxied_and_falls_back_when_down() {
    let d = Daemon::start();
    let (up, seen, stop) = custom_page_server();
    d.ctl_ok(&[
        "maint",
        "enter",
        "--url",
        &format!("http://{up}/maintenance.html?lang=en"),
        "--countdown",
        "120",
    ]);
    let r = get_html(d.addr, "/shop/cart");
    assert_eq!(r.status, 200, "the custom page's own status is kept");
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("Our own maintenance page"));
    // A sub-resource keeps its path on the custom page's origin.
    let _ = get(d.addr, "/static/site.css");
    {
        let seen = seen.lock().expect("lock");
        assert!(
            seen[0].starts_with("GET /maintenance.html?lang=en HTTP/1.1"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("x-maintenance-mode: true")
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("x-forwarded-for: 127.0.0.1")
        );
        assert!(
            seen[1].starts_with("GET /static/site.css HTTP/1.1"),
            "{}",
            seen[1]
        );
    }
    let st = get(d.addr, "/api/maintenance/status").json();
    assert_eq!(
        st["maintenancePageUrl"],
        format!("http://{up}/maintenance.html?lang=en")
    );

    // The custom page goes away: visitors get the default page, not an error.
    stop.send(()).expect("stop");
    std::thread::sleep(Duration::from_millis(100));
    let r = eventually(T, "default page after the custom page died", || {
        let r = get_html(d.addr, "/shop/cart");
        (r.status == 503).then_some(r)
    });
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
    assert!(r.text().contains("id=\"countdown\""));

    // An empty --url switches back to the built-in page.
    d.ctl_ok(&["maint", "enter", "--url", ""]);
    assert_eq!(
        get(d.addr, "/api/maintenance/status").json()["maintenancePageUrl"],
        serde_json::Value::Null
    );
}

fn sh(dir: &std::path::Path, script: &str) {
    let o = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh");
    assert!(
        o.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn https_custom_page_verified_against_upstream_ca_file() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is needed for this test (Debian package openssl)");
    }
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path();
    // A private CA and a leaf for 127.0.0.1, as an operator's internal status page would have.
    sh(
        p,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=KInfra Test CA' 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr -subj '/CN=localhost' 2>/dev/null
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
         openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 1 -extfile ext.cnf 2>/dev/null
         mkdir -p www && printf '<h1>TLS status page</h1>' > www/maint.html",
    );
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-cert", "../leaf.pem", "-key", "../leaf.key"])
        .current_dir(p.join("www"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(&mut server);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    eventually(T, "TLS server", || std::net::TcpStream::connect(addr).ok());
    let url = format!("https://127.0.0.1:{port}/maint.html");

    // Without the CA the certificate is not trusted: the default page is served instead.
    let plain = Daemon::start();
    plain.ctl_ok(&["maint", "enter", "--url", &url]);
    let r = get_html(plain.addr, "/");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("id=\"countdown\""));

    let cfg = p.join("kinfra.toml");
    std::fs::write(
        &cfg,
        format!("upstream_ca_file = \"{}\"\n", p.join("ca.pem").display()),
    )
    .expect("cfg");
    let cfg_s = cfg.display().to_string();
    let d = Daemon::start_with(
        tempfile::tempdir().expect("tmp"),
        &["--config", &cfg_s],
        &[],
    );
    d.ctl_ok(&["maint", "enter", "--url", &url]);
    let r = get_html(d.addr, "/anything");
    assert_eq!(r.status, 200, "{}", d.log_text());
    assert!(r.text().contains("TLS status page"));
    assert_eq!(r.header("x-maintenance-mode"), Some("true"));
}
