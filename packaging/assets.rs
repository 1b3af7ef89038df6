//! The man pages (section 8, with one page per subcommand, `kinfractl-maint.8`, …) and the shell
//! completions (bash, zsh, fish) of one command, rendered from the clap definition the binary
//! itself parses. Both build scripts (`build.rs` for kinfrad, `kinfractl/build.rs`) include this
//! file, so `cargo build` writes them with the binaries.
//!
//! They go to `OUT_DIR/assets/` (cargo's place for build output) and to
//! `target/<profile>/assets/`: a fixed place beside the binaries that cargo-deb's asset list and
//! packaging/install.sh can name (`OUT_DIR` carries a hash that changes between builds). Layout:
//! `man8/NAME.8.gz` (gzip -9, no name or time stored: reproducible), `completions/bash/NAME`, `completions/zsh/_NAME`, `completions/fish/NAME.fish`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Write the man pages and completions of `cmd` (named `name`).
pub fn write(cmd: clap::Command, name: &str) -> std::io::Result<()> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
        std::io::Error::other("OUT_DIR is not set: run by cargo as a build script")
    })?);
    let mut dirs = vec![out.join("assets")];
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    if let Some(profile) = out.ancestors().nth(3)
        && out.ancestors().nth(2).and_then(Path::file_name) == Some("build".as_ref())
    {
        dirs.push(profile.join("assets"));
    }
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    for dir in dirs {
        let man = dir.join("man8");
        std::fs::create_dir_all(&man)?;
        pages(&cmd, name, &man)?;
        for (shell, sub, file) in [
            (Shell::Bash, "bash", name.to_string()),
            (Shell::Zsh, "zsh", format!("_{name}")),
            (Shell::Fish, "fish", format!("{name}.fish")),
        ] {
            let d = dir.join("completions").join(sub);
            std::fs::create_dir_all(&d)?;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), name, &mut buf);
            replace(&d.join(file), &buf)?;
        }
    }
    Ok(())
}

/// `cmd`'s page as `name.8.gz`, then one per visible subcommand (`name-sub.8.gz`), recursively.
fn pages(cmd: &clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone().name(name.to_string()))
        .section("8")
        .manual("KInfra")
        .source(format!("kinfra {}", env!("CARGO_PKG_VERSION")));
    let mut gz = flate2::GzBuilder::new().write(Vec::new(), flate2::Compression::best());
    page.render(&mut gz)?;
    replace(&dir.join(format!("{name}.8.gz")), &gz.finish()?)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

/// Write `bytes` to `path` unless it already holds them (no needless mtime changes).
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("tmp");
    std::fs::File::create(&tmp)?.write_all(bytes)?;
    std::fs::rename(&tmp, path)
}
