//! Static checks of what ships for systemd: the unit files in units/ (systemd-analyze verify and
//! security), the example configuration, the sysusers.d entry and packaging/install.sh.
//!
//! `systemd-analyze verify` only warns ("... ignoring") about unknown keys or a misspelt value
//! and still exits 0, so the verify test demands an empty stderr as well as exit 0.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::units::{analyze, clean, replace_line, verify};
use common::{KINFRAD, output_text as text};

const UNITS: [&str; 3] = ["kinfra.service", "kinfra.socket", "kinfra-control.socket"];
/// kinfrad's default `shutdown_grace`; kinfra.service's TimeoutStopSec must exceed it.
const DEFAULT_GRACE_SECS: u64 = 10;
/// Highest acceptable `systemd-analyze security` exposure for kinfra.service: it scores 2.0, and
/// must stay at or below that.
const MAX_EXPOSURE: f64 = 2.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Copy the units into `dir` with ExecStart= pointing at the freshly built kinfrad (verify fails on
/// a missing binary, and /usr/bin/kinfrad is not installed on a build machine).
fn stage_units(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|name| {
            let mut unit = read(&repo().join("units").join(name));
            if *name == "kinfra.service" {
                assert!(
                    unit.contains("\nExecStart=/usr/bin/kinfrad\n"),
                    "kinfra.service must run /usr/bin/kinfrad (install.sh puts it there)"
                );
                unit = replace_line(&unit, "ExecStart=", &format!("ExecStart={KINFRAD}"));
            }
            let p = dir.join(name);
            std::fs::write(&p, unit).expect("write unit");
            p
        })
        .collect()
}

/// `[Section] Key=value` pairs of a unit file, comments and blank lines skipped.
fn settings(unit: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

fn get<'a>(s: &'a [(String, String, String)], section: &str, key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(sec, k, _)| sec == section && k == key)
        .map(|(_, _, v)| v.as_str())
        .collect()
}

fn one<'a>(s: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    let v = get(s, section, key);
    assert_eq!(
        v.len(),
        1,
        "[{section}] {key}= should be set once, got {v:?}"
    );
    v[0]
}

#[test]
fn units_pass_systemd_analyze_verify_without_warnings() {
    if !have("systemd-analyze") {
        println!("SKIP: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let files = stage_units(dir.path());
    let o = verify(dir.path(), &files);
    assert!(o.status.success(), "verify failed: {}", text(&o));
    assert!(
        o.stderr.is_empty(),
        "verify printed warnings (unknown keys or bad values are only warnings): {}",
        text(&o)
    );

    // The check above would catch a misspelt key: prove it on a broken copy.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    let files = stage_units(&bad);
    let unit = read(&files[0]).replace("WatchdogSec=", "WatchdogSecs=");
    std::fs::write(&files[0], unit).expect("write");
    let o = verify(&bad, &files);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("WatchdogSecs"),
        "a misspelt key should be reported on stderr: {}",
        text(&o)
    );
}

#[test]
fn units_carry_the_settings_kinfrad_relies_on() {
    let unit = |n: &str| settings(&read(&repo().join("units").join(n)));
    let svc = unit("kinfra.service");
    let http = unit("kinfra.socket");
    let ctl = unit("kinfra-control.socket");

    assert_eq!(one(&svc, "Service", "Type"), "notify");
    assert_eq!(one(&svc, "Service", "NotifyAccess"), "main");
    assert_eq!(one(&svc, "Service", "ExecStart"), "/usr/bin/kinfrad");
    assert_eq!(
        one(&svc, "Service", "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(one(&svc, "Service", "KillMode"), "mixed");
    assert_eq!(one(&svc, "Service", "Restart"), "on-failure");
    assert!(!one(&svc, "Service", "WatchdogSec").is_empty());
    let sockets: Vec<&str> = one(&svc, "Service", "Sockets").split_whitespace().collect();
    assert_eq!(sockets, ["kinfra.socket", "kinfra-control.socket"]);
    let stop = humantime::parse_duration(one(&svc, "Service", "TimeoutStopSec"))
        .expect("TimeoutStopSec is a duration");
    assert!(
        stop.as_secs() > DEFAULT_GRACE_SECS + 1,
        "TimeoutStopSec must leave room for the {DEFAULT_GRACE_SECS}s shutdown grace"
    );

    // kinfrad finds its sockets by name.
    assert_eq!(one(&http, "Socket", "FileDescriptorName"), "http");
    assert_eq!(one(&ctl, "Socket", "FileDescriptorName"), "control");
    assert_eq!(one(&http, "Socket", "Service"), "kinfra.service");
    assert_eq!(one(&ctl, "Socket", "Service"), "kinfra.service");
    assert_eq!(one(&http, "Socket", "ListenStream"), "127.0.0.1:9100");

    // The control socket lives in the service's RuntimeDirectory, at the path kinfrad derives
    // from $RUNTIME_DIRECTORY and kinfractl uses by default as root; the directory must survive
    // service stops, or the socket file the socket unit still listens on would be deleted.
    let ctl_path = one(&ctl, "Socket", "ListenStream");
    let runtime = one(&svc, "Service", "RuntimeDirectory");
    assert_eq!(ctl_path, format!("/run/{runtime}/control.sock"));
    assert_eq!(one(&svc, "Service", "RuntimeDirectoryPreserve"), "yes");
    assert_eq!(ctl_path, "/run/kinfra/control.sock");
    if nix::unistd::geteuid().is_root() && std::env::var_os("RUNTIME_DIRECTORY").is_none() {
        assert_eq!(
            kinfra::paths::default_control_socket(),
            Ok(PathBuf::from(ctl_path)),
            "kinfractl's default socket for root must be the socket unit's"
        );
    }
    assert_eq!(one(&ctl, "Socket", "SocketMode"), "0660");
    assert_eq!(one(&ctl, "Socket", "SocketGroup"), "kinfra");
    assert_eq!(one(&ctl, "Socket", "RemoveOnStop"), "yes");
    assert_eq!(one(&svc, "Service", "StateDirectory"), "kinfra");

    assert_eq!(one(&svc, "Install", "WantedBy"), "multi-user.target");
    assert_eq!(one(&http, "Install", "WantedBy"), "sockets.target");
    assert_eq!(one(&ctl, "Install", "WantedBy"), "sockets.target");
}

#[test]
fn service_exposure_stays_low() {
    if !have("systemd-analyze") {
        println!("SKIP: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let files = stage_units(dir.path());
    let o = analyze(
        dir.path(),
        &["security", "--offline=yes", "--no-pager"],
        &files[..1],
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for kinfra.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in: {}", text(&o)));
    println!("systemd-analyze security exposure for kinfra.service: {score}");
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}: was hardening dropped? {}",
        text(&o)
    );
}

/// Keys of `RawConfig` (in the `config` folder of src/): the only keys kinfrad accepts.
fn config_keys() -> Vec<String> {
    let dir = repo().join("src/config");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let body = files
        .iter()
        .map(|f| read(f))
        .find_map(|src| {
            let body = src.split("struct RawConfig {").nth(1)?.split('}').next()?;
            Some(body.to_string())
        })
        .expect("RawConfig in src/config/");
    body.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with("//") && !k.starts_with('#'))
        .collect()
}

fn check_config(path: &Path) -> Output {
    clean(KINFRAD)
        .arg("--check-config")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run kinfrad --check-config")
}

#[test]
fn example_config_passes_check_config() {
    let example = repo().join("packaging/kinfra.toml");
    let o = check_config(&example);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // It documents every key kinfrad accepts, as a commented `#key = value` line...
    let body = read(&example);
    let keys = config_keys();
    assert!(keys.len() >= 8, "parsed keys of RawConfig: {keys:?}");
    // Tables (`[[service]]`, `[page_config]`) are shown as commented table headers instead.
    let is_table = |l: &str, k: &str| l == format!("#[[{k}]]") || l == format!("#[{k}]");
    for k in &keys {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("#{k} = ")) || is_table(l, k)),
            "packaging/kinfra.toml does not show `#{k} = ...` (or `#[[{k}]]` / `#[{k}]`)"
        );
    }
    // ...and with all of them switched on it is still valid. Paths that must exist for the check
    // point at real ones: templates_dir at the repository's templates, upstream_ca_file at the
    // system CA bundle (dropped where there is none).
    let templates = repo().join("templates").display().to_string();
    let ca = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file());
    // A commented table runs from its header to the next blank line; all of it is switched on.
    let mut in_table = false;
    let on: String = body
        .lines()
        .map(|l| {
            if keys.iter().any(|k| is_table(l, k)) {
                in_table = true;
            } else if l.trim().is_empty() {
                in_table = false;
            }
            (l, in_table)
        })
        .map(|(l, in_table)| match l.strip_prefix('#') {
            Some(rest) if in_table && !rest.starts_with(' ') => format!("{rest}\n"),
            Some(rest) if keys.iter().any(|k| rest.starts_with(&format!("{k} = "))) => {
                if rest.starts_with("templates_dir = ") {
                    format!("templates_dir = {templates:?}\n")
                } else if rest.starts_with("upstream_ca_file = ") {
                    ca.map(|c| format!("upstream_ca_file = {c:?}\n"))
                        .unwrap_or_default()
                } else {
                    format!("{rest}\n")
                }
            }
            _ => format!("{l}\n"),
        })
        .collect();
    let dir = tempfile::tempdir().expect("tmp");
    let all_on = dir.path().join("kinfra.toml");
    std::fs::write(&all_on, &on).expect("write");
    let o = check_config(&all_on);
    assert_eq!(o.status.code(), Some(0), "{on}\n{}", text(&o));
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let p = dir.path().join("kinfra.toml");
    std::fs::write(
        &p,
        "listen = [\"127.0.0.1:9100\"]\nshutdown_grase = \"5s\"\n",
    )
    .expect("write");
    let o = check_config(&p);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("shutdown_grase") && err.contains("kinfra.toml"),
        "stderr should name the file and the key: {}",
        text(&o)
    );
}

#[test]
fn sysusers_entry_creates_the_kinfra_group() {
    if !have("systemd-sysusers") {
        println!("SKIP: systemd-sysusers is not installed");
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(root.path().join("etc")).expect("mkdir");
    let o = clean("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg(repo().join("packaging/sysusers.d/kinfra.conf"))
        .output()
        .expect("run systemd-sysusers");
    assert!(o.status.success(), "{}", text(&o));
    let group = read(&root.path().join("etc/group"));
    assert!(
        group.lines().any(|l| l.starts_with("kinfra:")),
        "no kinfra group in: {group}"
    );
}

fn install_sh(destdir: &Path, args: &[&str]) -> Output {
    // install.sh takes both binaries from one directory: kinfractl is built beside kinfrad.
    common::kinfractl();
    let bin_dir = Path::new(KINFRAD).parent().expect("bin dir");
    Command::new("bash")
        .arg(repo().join("packaging/install.sh"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(args)
        .env("DESTDIR", destdir)
        .output()
        .expect("run install.sh")
}

#[test]
fn install_sh_installs_into_destdir_idempotently() {
    use std::os::unix::fs::PermissionsExt;
    let script = read(&repo().join("packaging/install.sh"));
    assert!(script.contains("\nset -euo pipefail\n"));

    let dest = tempfile::tempdir().expect("tmp");
    let d = dest.path();
    let o = install_sh(d, &[]);
    assert!(o.status.success(), "{}", text(&o));
    for b in ["kinfrad", "kinfractl"] {
        let m = std::fs::metadata(d.join("usr/bin").join(b)).expect("binary installed");
        assert_eq!(m.permissions().mode() & 0o777, 0o755, "{b}");
    }
    for u in UNITS {
        assert_eq!(
            read(&d.join("etc/systemd/system").join(u)),
            read(&repo().join("units").join(u)),
            "{u}"
        );
    }
    assert!(d.join("etc/sysusers.d/kinfra.conf").is_file());
    let cfg = d.join("etc/kinfra/kinfra.toml");
    assert_eq!(read(&cfg), read(&repo().join("packaging/kinfra.toml")));

    // A second run succeeds and keeps the administrator's config.
    std::fs::write(&cfg, "listen = [\"127.0.0.1:9200\"]\n").expect("edit config");
    let o = install_sh(d, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read(&cfg), "listen = [\"127.0.0.1:9200\"]\n");

    // --vendor puts units and the sysusers entry under /usr/lib.
    let o = install_sh(d, &["--vendor"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.join("usr/lib/systemd/system/kinfra.service").is_file());
    assert!(d.join("usr/lib/sysusers.d/kinfra.conf").is_file());

    // Nothing outside DESTDIR: no daemon-reload, no group creation (both need DESTDIR empty).
    let o = install_sh(d, &["--bin-dir", "/nonexistent"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/kinfrad"));
}
