//! Logging: the journal (structured fields) when stderr is connected to it, else plain stderr.
//!
//! In the journal, fields keep their own names upper-cased (`service` → `SERVICE`, no `F_`
//! prefix). `KINFRA_LOG` (EnvFilter syntax, default `info`) sets the level. ANSI colours only on a tty.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Which sink was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Journal,
    Stderr,
}

/// Is stderr the journal stream systemd set up (JOURNAL_STREAM = "dev:inode" of stderr)?
pub fn stderr_is_journal() -> bool {
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match nix::sys::stat::fstat(std::io::stderr().as_fd()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Install the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() -> Sink {
    let filter =
        || EnvFilter::try_from_env("KINFRA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                // No "F_" prefix: a field `service` is SERVICE= in the journal, so
                // `journalctl -u kinfra SERVICE=api` finds a service's events.
                let layer = layer
                    .with_syslog_identifier("kinfrad".to_string())
                    .with_field_prefix(None);
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return Sink::Journal;
                }
                return Sink::Journal;
            }
            Err(e) => {
                eprintln!("kinfrad: journald unavailable ({e}); logging to stderr");
            }
        }
    }
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false),
        )
        .try_init();
    Sink::Stderr
}
