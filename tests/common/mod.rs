//! Shared helpers for the integration tests, one role a file: run the real binaries
//! ([`daemon`]: the `Daemon` fixture and kinfrad's status), speak raw HTTP/1.1 over loopback
//! ([`http`]: one client and one response reader), stand in for an upstream ([`upstream`], with
//! the byte [`pattern`] for large bodies), check kinfrad's fallback answers ([`fallback`]),
//! read kinfrad's event log ([`events`]), receive sd_notify datagrams ([`notify`]) and
//! Server-Sent Events ([`sse`]), run small Python services ([`python`]), scrape `/metrics` and
//! parse it as Prometheus would ([`metrics`]), drive systemd's tools ([`units`]), run a real
//! etcd cluster for the fleet tests ([`etcd`]); and here, what
//! they all use: wait for conditions instead of sleeping, free ports, the binaries' paths.
//!
//! Every test binary includes this module whole (`mod common;`, or `#[path]` from a folder
//! target) and uses a part of it.
// Each binary uses a part of it: the rest, and the re-exports it does not use, are no mistake.
#![allow(dead_code, unused_imports)]

pub mod daemon;
pub mod etcd;
pub mod events;
pub mod fallback;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod pattern;
pub mod python;
pub mod sse;
pub mod units;
pub mod upstream;

pub use daemon::*;
pub use events::*;
pub use fallback::*;
pub use http::*;
pub use metrics::{Metrics, metrics_response, scrape};
pub use notify::NotifyRx;
pub use pattern::*;
pub use python::*;
pub use sse::Sse;
pub use upstream::*;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KINFRAD: &str = env!("CARGO_BIN_EXE_kinfrad");

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind :0");
    l.local_addr().expect("addr").port()
}

/// A finished command's exit status, stdout and stderr, for failure messages.
pub fn output_text(o: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Running: neither gone nor a zombie waiting for its new parent to reap it.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|st| {
            st.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// A process's resident set size in KiB (`VmRSS` in /proc/PID/status); `None` once it is gone.
pub fn vmrss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// kinfractl, as built from this checkout: the path next to [`KINFRAD`] (same target directory
/// and profile). kinfractl is another package of the workspace (it depends on kinfra-proto, not
/// on this one), and cargo sets `CARGO_BIN_EXE_*` only for the test's own package and builds only
/// that package's binaries for `cargo test --test NAME`. So the first call in each test binary
/// has cargo build it (`cargo build -p kinfractl --locked`, a no-op when it is up to date): never
/// a missing or stale kinfractl, however the tests were started.
pub fn kinfractl() -> &'static str {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(build_kinfractl)
}

fn build_kinfractl() -> String {
    let kinfrad = Path::new(KINFRAD);
    let profile_dir = kinfrad.parent().expect("kinfrad has a directory");
    // The target directory is where cargo left its CACHEDIR.TAG, above the profile directory:
    // target/debug, or target/<triple>/debug with --target.
    let target_dir = profile_dir
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").is_file())
        .unwrap_or_else(|| profile_dir.parent().expect("a target directory"));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--locked",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args([
            "-p",
            "kinfractl",
            "--bin",
            "kinfractl",
            "--profile",
            profile,
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(triple) = profile_dir
        .parent()
        .filter(|d| *d != target_dir)
        .and_then(|d| d.file_name())
    {
        build.arg("--target").arg(triple);
    }
    let out = build
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo to build kinfractl");
    assert!(
        out.status.success(),
        "cargo build -p kinfractl: {}",
        out.status
    );
    // cargo names the executable it built (or found up to date) in its JSON messages.
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "kinfractl")
        .and_then(|m| m["executable"].as_str().map(String::from))
        .expect("cargo names the kinfractl executable");
    let beside = profile_dir.join("kinfractl");
    assert_eq!(
        Path::new(&built),
        beside,
        "kinfractl was built elsewhere than beside kinfrad"
    );
    built
}

/// A temporary directory other users may enter (0755), when this run can act as them (root,
/// and `setpriv` present); otherwise `None`, after printing `SKIP: needs root and setpriv to
/// {why}`.
pub fn dir_for_other_users(why: &str) -> Option<tempfile::TempDir> {
    if !nix::unistd::geteuid().is_root()
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        eprintln!("SKIP: needs root and setpriv to {why}");
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    Some(dir)
}
