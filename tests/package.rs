//! The Debian package (scripts/deb.sh: cargo-deb on a release build) as an administrator meets
//! it: its files and their modes, the conffile, the man pages and completions; its units pass
//! `systemd-analyze verify`; `lintian` finds no error; and `dpkg` installs it into a throwaway
//! root (`--root` with `--force-script-chrootless`, so the maintainer scripts run and honour
//! DPKG_ROOT), creates the `kinfra` group there, keeps state and an edited config on `-r`, and
//! removes them on `-P`.
//!
//! The package is built once per run (a release build: minutes when target/ is cold);
//! `KINFRA_DEB=path.deb` tests one built before.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::output_text as text;
use common::units::{replace_line, verify};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh installs what the tests need)"))
}

/// The package: built by scripts/deb.sh once, or `KINFRA_DEB`.
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(p) = std::env::var_os("KINFRA_DEB") {
            return PathBuf::from(p);
        }
        let o = run(Command::new(repo().join("scripts/deb.sh")).current_dir(repo()));
        assert!(o.status.success(), "scripts/deb.sh failed: {}", text(&o));
        let path = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(path.ends_with(".deb"), "scripts/deb.sh printed {path:?}");
        PathBuf::from(path)
    })
}

/// The package's files, unpacked (`dpkg-deb -x`), and its control files (`-e`).
fn unpacked() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let (root, control) = (dir.path().join("root"), dir.path().join("DEBIAN"));
    for (flag, to) in [("-x", &root), ("-e", &control)] {
        let o = run(Command::new("dpkg-deb").arg(flag).arg(deb()).arg(to));
        assert!(o.status.success(), "dpkg-deb {flag}: {}", text(&o));
    }
    (dir, root, control)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn gunzip(p: &Path) -> String {
    let o = run(Command::new("gzip").arg("-dc").arg(p));
    assert!(o.status.success(), "{}: {}", p.display(), text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_package_holds_binaries_units_config_man_pages_and_completions() {
    let (_dir, root, control) = unpacked();
    let want: BTreeMap<&str, u32> = [
        ("usr/bin/kinfrad", 0o755),
        ("usr/bin/kinfractl", 0o755),
        ("lib/systemd/system/kinfra.service", 0o644),
        ("lib/systemd/system/kinfra.socket", 0o644),
        ("lib/systemd/system/kinfra-control.socket", 0o644),
        ("usr/lib/sysusers.d/kinfra.conf", 0o644),
        ("etc/kinfra/kinfra.toml", 0o644),
        ("usr/share/man/man8/kinfrad.8.gz", 0o644),
        ("usr/share/man/man8/kinfractl.8.gz", 0o644),
        ("usr/share/man/man8/kinfractl-maint-enter.8.gz", 0o644),
        ("usr/share/bash-completion/completions/kinfractl", 0o644),
        ("usr/share/zsh/vendor-completions/_kinfractl", 0o644),
        ("usr/share/fish/vendor_completions.d/kinfractl.fish", 0o644),
        ("usr/share/bash-completion/completions/kinfrad", 0o644),
        ("usr/share/doc/kinfra/copyright", 0o644),
        ("usr/share/doc/kinfra/examples/kinfra-alerts.yml", 0o644),
    ]
    .into_iter()
    .collect();
    for (file, m) in &want {
        assert_eq!(mode(&root.join(file)), *m, "{file}");
    }
    for unit in ["kinfra.service", "kinfra.socket", "kinfra-control.socket"] {
        assert_eq!(
            std::fs::read(root.join("lib/systemd/system").join(unit)).expect("unit"),
            std::fs::read(repo().join("units").join(unit)).expect("unit"),
            "{unit}"
        );
    }
    assert_eq!(
        std::fs::read(root.join("etc/kinfra/kinfra.toml")).expect("config"),
        std::fs::read(repo().join("packaging/kinfra.toml")).expect("config")
    );
    let conffiles = std::fs::read_to_string(control.join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.trim(), "/etc/kinfra/kinfra.toml");
    for script in ["postinst", "prerm", "postrm"] {
        assert_eq!(mode(&control.join(script)), 0o755, "{script}");
    }

    // The binaries run; the man pages are pages (roff, the right name and section).
    for b in ["kinfrad", "kinfractl"] {
        let o = run(Command::new(root.join("usr/bin").join(b)).arg("--version"));
        assert!(o.status.success(), "{b} --version: {}", text(&o));
    }
    for (page, name) in [
        ("kinfrad.8.gz", "kinfrad"),
        ("kinfractl.8.gz", "kinfractl"),
        ("kinfractl-maint-enter.8.gz", "kinfractl-maint-enter"),
    ] {
        let roff = gunzip(&root.join("usr/share/man/man8").join(page));
        assert!(roff.contains(&format!(".TH {name} 8")), "{page}: {roff}");
    }
    let kinfrad = gunzip(&root.join("usr/share/man/man8/kinfrad.8.gz"));
    assert!(kinfrad.contains("check\\-config"), "{kinfrad}");
    // Completions know the subcommands.
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/kinfractl"))
            .expect("bash completion");
    for sub in ["maint", "drain", "restart", "logs"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let o = run(Command::new("bash")
        .arg("-n")
        .arg(root.join("usr/share/bash-completion/completions/kinfractl")));
    assert!(o.status.success(), "bash -n: {}", text(&o));
}

#[test]
fn the_packaged_units_pass_systemd_analyze_verify() {
    let (dir, root, _control) = unpacked();
    // verify needs ExecStart's binary to exist: point it at the package's own kinfrad.
    let staged = dir.path().join("units");
    std::fs::create_dir(&staged).expect("mkdir");
    let mut files = Vec::new();
    for unit in ["kinfra.service", "kinfra.socket", "kinfra-control.socket"] {
        let mut text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit))
            .expect("packaged unit");
        if unit == "kinfra.service" {
            let bin = root.join("usr/bin/kinfrad");
            text = replace_line(&text, "ExecStart=", &format!("ExecStart={}", bin.display()));
        }
        let p = staged.join(unit);
        std::fs::write(&p, text).expect("write");
        files.push(p);
    }
    let o = verify(&staged, &files);
    assert!(o.status.success(), "verify: {}", text(&o));
    assert!(o.stderr.is_empty(), "verify printed warnings: {}", text(&o));
}

#[test]
fn lintian_finds_no_error() {
    let o = run(Command::new("lintian")
        .args(["--tag-display-limit", "0"])
        .arg(deb()));
    let out = String::from_utf8_lossy(&o.stdout);
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", text(&o));
    // Warnings are reported, not failed on (the closing notes list them).
    for w in out.lines().filter(|l| l.starts_with("W:")) {
        eprintln!("lintian: {w}");
    }
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
        ])
        .args(args))
}

#[test]
fn dpkg_installs_removes_and_purges_in_a_throwaway_root() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "etc",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    let deb = deb().display().to_string();

    let o = dpkg(root, &["-i", &deb]);
    assert!(o.status.success(), "dpkg -i: {}", text(&o));
    assert!(root.join("usr/bin/kinfrad").is_file());
    // postinst ran systemd-sysusers on the throwaway root, not on this machine.
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    assert!(
        group.lines().any(|l| l.starts_with("kinfra:")),
        "no kinfra group in the root's /etc/group: {group:?}"
    );
    let o = dpkg(root, &["-s", "kinfra"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Status: install ok installed"),
        "{}",
        text(&o)
    );

    // kinfrad's state and an administrator's edit of the config.
    let state = root.join("var/lib/kinfra");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::write(state.join("state.json"), "{}").expect("state");
    let cfg = root.join("etc/kinfra/kinfra.toml");
    std::fs::write(&cfg, "listen = [\"127.0.0.1:9200\"]\n").expect("edit config");

    // Installing again (an upgrade in place) keeps the edited conffile.
    let o = dpkg(root, &["--force-confold", "-i", &deb]);
    assert!(o.status.success(), "dpkg -i again: {}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&cfg).expect("cfg"),
        "listen = [\"127.0.0.1:9200\"]\n"
    );

    // -r: the programs go, state and configuration stay.
    let o = dpkg(root, &["-r", "kinfra"]);
    assert!(o.status.success(), "dpkg -r: {}", text(&o));
    assert!(!root.join("usr/bin/kinfrad").exists());
    assert!(!root.join("lib/systemd/system/kinfra.service").exists());
    assert!(state.join("state.json").is_file(), "dpkg -r removed state");
    assert!(cfg.is_file(), "dpkg -r removed the config");

    // -P: they go too.
    let o = dpkg(root, &["-P", "kinfra"]);
    assert!(o.status.success(), "dpkg -P: {}", text(&o));
    assert!(!state.exists(), "dpkg -P kept {}", state.display());
    assert!(!cfg.exists(), "dpkg -P kept the config");
    assert!(!root.join("etc/kinfra").exists());
}
