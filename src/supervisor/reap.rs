//! Killing what a previous kinfrad with the same owner left behind.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// The environment variable that marks a child (and what it starts) as a kinfrad's.
pub const OWNER_ENV: &str = "KINFRA_OWNER";

/// Kill the process groups of processes a previous kinfrad with the same `owner` left behind.
/// A child dies with kinfrad (PDEATHSIG), but after `kill -9` its own children, in its process
/// group, would live on. Called before this kinfrad starts any child, so every process carrying
/// the mark is a leftover. Returns how many processes were found.
pub fn reap_leftovers(owner: &str) -> usize {
    let mark = format!("{OWNER_ENV}={owner}");
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable: skipped.
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if !env.split(|b| *b == 0).any(|v| v == mark.as_bytes()) {
            continue;
        }
        let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)));
        // A group whose leader is still the child of a running kinfrad belongs to that kinfrad
        // (a second instance started by mistake on the same state directory): not a leftover.
        if let Ok(g) = pgid
            && owned_by_live_kinfrad(g.as_raw())
        {
            continue;
        }
        found += 1;
        tracing::warn!(pid, pgid = ?pgid.ok().map(|g| g.as_raw()), "killing a process a previous kinfrad left behind");
        match pgid {
            // Never our own group (a child always has its own).
            Ok(g) if g != nix::unistd::getpgrp() => {
                let _ = killpg(g, Signal::SIGKILL);
            }
            _ => {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
    found
}

/// Is process `leader` alive with a parent named kinfrad?
fn owned_by_live_kinfrad(leader: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{leader}/stat")) else {
        return false;
    };
    // "pid (comm) state ppid …": comm may hold spaces and parentheses; split at the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return false;
    };
    let mut f = rest.split_whitespace();
    let (Some(state), Some(ppid)) = (f.next(), f.next()) else {
        return false;
    };
    if state == "Z" {
        return false;
    }
    std::fs::read_to_string(format!("/proc/{ppid}/comm")).is_ok_and(|c| c.trim() == "kinfrad")
}
