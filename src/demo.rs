//! The built-in demo service (`kinfrad --demo`): kinfrad runs a copy of itself
//! (`kinfrad --demo-service`) as a supervised service at `/`, so a newcomer sees the whole idea
//! without writing a config: the loading page with live steps while it "starts" (it announces
//! them over its NOTIFY_SOCKET), the page once it is ready, and — after "Crash it" — the 503
//! page and the recovery.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The `[[service]]` kinfrad adds for `--demo`.
pub fn service_toml(exe: &str) -> String {
    // A TOML string (Rust's `{:?}` escapes differently, e.g. control characters).
    let exe = toml::Value::String(exe.to_string());
    format!(
        r#"name = "demo"
display_name = "Demo service"
command = [{exe}, "--demo-service"]
preferred_port = 9180
routes = ["/"]
ready = "notify"
fallback_page = "loading"
fallback_message = "Starting the demo service…"
fallback_refresh_interval = 3
health_check = {{ interval = "300ms", grace = "30s" }}
"#
    )
}

/// Tell kinfrad (the service's NOTIFY_SOCKET) `lines`; best effort, as the demo has no one to
/// report a failure to.
fn notify(lines: &[&str]) {
    let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let _ = crate::systemd::notify::Notifier::from_env().send(&lines);
}

/// Run the demo service; returns the process exit code.
pub fn run() -> u8 {
    let Some(port) = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse::<u16>().ok())
    else {
        eprintln!("ERROR: --demo-service runs under kinfrad, which sets PORT");
        return 2;
    };
    let started = Instant::now();
    for (step, secs) in [
        ("Installing dependencies", 1.5),
        ("Compiling assets", 1.5),
        ("Warming caches", 1.0),
    ] {
        println!("INFO {step}…");
        notify(&[&format!("STATUS={step}")]);
        std::thread::sleep(Duration::from_secs_f64(secs));
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ERROR: cannot listen on 127.0.0.1:{port}: {e}");
            return 1;
        }
    };
    println!("INFO listening on 127.0.0.1:{port}");
    notify(&["READY=1", "STATUS=Serving requests"]);
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(match conn.try_clone() {
            Ok(c) => c,
            Err(_) => continue,
        });
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0).min(4096);
            }
        }
        let mut body = vec![0u8; len];
        let _ = reader.read_exact(&mut body);
        let crash = line.starts_with("POST /crash");
        let page = if crash {
            "<!doctype html><meta charset=utf-8><title>Crashing</title><p>Crashing now — reload: KInfra shows its page until the service is back.</p><meta http-equiv=refresh content=1>".to_string()
        } else {
            format!(
                "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>\
                 <title>KInfra demo service</title>\
                 <body style='font-family:system-ui;background:#0F1115;color:#e6e6e6;max-width:40em;margin:3em auto;padding:0 1em'>\
                 <h1 style='color:#5A8DEE'>Hello from the demo service</h1>\
                 <p>This page comes from a process kinfrad started (pid {}, up {} s), proxied through kinfrad.</p>\
                 <form method=post action=/crash><button style='font-size:1.1em;padding:.5em 1em'>Crash it</button></form>\
                 <p>kinfrad restarts it with back-off; meanwhile visitors get its 503 page, which comes back here by itself.\
                 Also try <code>kinfractl ps</code>, <code>kinfractl logs demo</code>, <code>kinfractl stop demo</code> and <code>kinfractl start demo</code>.</p>",
                std::process::id(),
                started.elapsed().as_secs()
            )
        };
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{page}",
            page.len()
        );
        let _ = conn.flush();
        if crash {
            eprintln!("ERROR demo service crashing on request");
            return 1;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_service_names_any_executable_path() {
        for exe in [
            "/usr/bin/kinfrad",
            "/opt/a \"b\"\\c/kinfrad",
            "/tmp/x\u{1}y/kinfrad",
        ] {
            let v: toml::Value = toml::from_str(&super::service_toml(exe)).expect("valid TOML");
            assert_eq!(v["command"][0].as_str(), Some(exe));
        }
    }
}
