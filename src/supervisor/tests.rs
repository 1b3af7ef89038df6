//! The supervisor's unit tests: levels, the ring, notify lines, back-off, ports and real children.

use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use nix::unistd::Pid;

use super::*;

fn spec(argv: &[&str], restart: RestartPolicy) -> ProcessSpec {
    ProcessSpec {
        name: "t".into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: None,
        env: vec![("EXTRA".into(), "1".into())],
        preferred_port: 0,
        port_range: (20_000, 60_000),
        restart,
        stop_signal: Signal::SIGTERM,
        stop_timeout: Duration::from_millis(500),
        log_lines: 5,
        notify_dir: None,
        instance: "test".into(),
        owner: "unit-test-owner".into(),
        events: Arc::new(crate::eventlog::EventLog::new()),
    }
}

async fn until(h: &Handle, what: &str, f: impl Fn(&ProcStatus) -> bool) -> ProcStatus {
    let mut rx = h.status.clone();
    let r = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| f(s))).await;
    match r {
        Ok(Ok(s)) => s.clone(),
        _ => panic!("{what}: last status {:?}", h.status.borrow()),
    }
}

#[test]
fn levels_from_prefixes() {
    assert_eq!(Level::of("ERROR: boom", Stream::Stdout), Level::Error);
    assert_eq!(Level::of("[warn] careful", Stream::Stdout), Level::Warn);
    assert_eq!(Level::of("level=info msg=x", Stream::Stderr), Level::Info);
    assert_eq!(Level::of("DEBUG x", Stream::Stdout), Level::Debug);
    assert_eq!(Level::of("errorless text", Stream::Stdout), Level::Info);
    assert_eq!(Level::of("plain", Stream::Stderr), Level::Warn);
}

#[test]
fn ring_is_bounded_and_counts_drops() {
    let r = LogRing::new(3);
    for i in 0..5 {
        r.push(LogLine {
            at: SystemTime::now(),
            stream: Stream::Stdout,
            level: Level::Info,
            text: i.to_string(),
        });
    }
    let t: Vec<String> = r.tail(10).into_iter().map(|l| l.text).collect();
    assert_eq!(t, ["2", "3", "4"]);
    assert_eq!(r.dropped(), 2);
    assert_eq!(r.tail(1)[0].text, "4");
    // Followers: cursor 0 lost two lines; from 3 on, one line at a time; the end waits.
    let texts = |v: Vec<LogLine>| v.into_iter().map(|l| l.text).collect::<Vec<_>>();
    let (l, next, skipped) = r.since(0, 10);
    assert_eq!(
        (texts(l), next, skipped),
        (vec!["2".into(), "3".into(), "4".into()], 5, 2)
    );
    let (l, next, skipped) = r.since(3, 1);
    assert_eq!((texts(l), next, skipped), (vec!["3".to_string()], 4, 0));
    assert_eq!(r.since(5, 10), (Vec::new(), 5, 0));
    // A cursor from another (longer-lived) ring starts over.
    let (l, next, _) = r.since(99, 10);
    assert_eq!((l.len(), next), (3, 5));
}

#[test]
fn notify_lines_become_message_steps_and_readiness() {
    let mut s = ProcStatus::stopped();
    s.apply_notify("STATUS=Installing packages");
    s.apply_notify("STATUS=Installing packages\nEXTEND_TIMEOUT_USEC=5000000");
    s.apply_notify("STATUS=Compiling\x07");
    assert_eq!(s.message.as_deref(), Some("Compiling"));
    let steps: Vec<(&str, &str)> = s
        .steps
        .iter()
        .map(|x| (x.text.as_str(), x.status))
        .collect();
    assert_eq!(
        steps,
        [
            ("Installing packages", "completed"),
            ("Compiling", "active")
        ]
    );
    assert!(!s.ready && s.extend_until.is_some());
    s.apply_notify("READY=1\nSTATUS=Serving");
    assert!(s.ready);
    assert!(
        s.steps.iter().all(|x| x.status == "completed"),
        "{:?}",
        s.steps
    );
    for i in 0..30 {
        s.apply_notify(&format!("STATUS=step {i}"));
    }
    assert_eq!(s.steps.len(), MAX_STEPS);
}

#[test]
fn backoff_doubles_to_a_cap() {
    assert_eq!(backoff(0), Duration::from_millis(500));
    assert_eq!(backoff(1), Duration::from_secs(1));
    assert_eq!(backoff(3), Duration::from_secs(4));
    assert_eq!(backoff(20), BACKOFF_CAP);
    assert_eq!(backoff(u32::MAX), BACKOFF_CAP);
}

#[test]
fn ports_and_argv() {
    assert_eq!(
        expand_argv(&["--bind=127.0.0.1:{port}".into(), "x".into()], 8001),
        ["--bind=127.0.0.1:8001", "x"]
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let p = busy.local_addr().expect("addr").port();
    let got = pick_port(p, (1024, 65535)).expect("a port");
    assert_ne!(got, p, "a taken port is skipped");
    assert!(pick_port(p, (p, p)).is_none());
}

#[test]
fn exit_descriptions() {
    let e = ExitInfo {
        code: Some(1),
        signal: None,
        at: SystemTime::now(),
    };
    assert_eq!(e.describe(), "Process exited with code 1");
    let e = ExitInfo {
        code: None,
        signal: Some(9),
        at: SystemTime::now(),
    };
    assert_eq!(e.describe(), "Process killed by signal 9 (SIGKILL)");
}

#[tokio::test]
async fn runs_captures_crashes_backs_off_and_stops() {
    let (_stop_tx, stop) = watch::channel(false);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let h = spawn(
        spec(
            &[
                "sh",
                "-c",
                "echo port=$PORT arg={port} extra=$EXTRA notify=${NOTIFY_SOCKET:-none}; echo ERROR bad >&2; exit 3",
            ],
            RestartPolicy::OnFailure,
        ),
        true,
        move |p| seen2.lock().expect("lock").push(p),
        stop,
    );
    let s = until(&h, "a crash and a restart", |s| s.restarts >= 2).await;
    assert_eq!(
        s.last_exit.as_ref().map(|e| e.describe()),
        Some("Process exited with code 3".into())
    );
    let lines = h.logs.tail(10);
    let out = lines
        .iter()
        .find(|l| l.stream == Stream::Stdout)
        .expect("stdout line");
    let ports = seen.lock().expect("lock").clone();
    assert!(
        ports
            .iter()
            .any(|p| out.text == format!("port={p} arg={p} extra=1 notify=none")),
        "{out:?} (ports {ports:?})"
    );
    let err = lines
        .iter()
        .find(|l| l.stream == Stream::Stderr)
        .expect("stderr line");
    assert_eq!((err.level, err.text.as_str()), (Level::Error, "ERROR bad"));
    h.commands.send(Command::Stop).await.expect("send");
    until(&h, "stopped", |s| s.state == ProcState::Stopped).await;
}

#[tokio::test]
async fn stop_kills_the_group_and_a_stubborn_child() {
    let (_stop_tx, stop) = watch::channel(false);
    let dir = tempfile::tempdir().expect("tmp");
    let pidfile = dir.path().join("grandchild");
    // The child ignores SIGTERM and leaves a grandchild that ignores it too.
    let script = format!(
        "trap '' TERM; (trap '' TERM; sleep 300) & echo $! > {}; while :; do sleep 1; done",
        pidfile.display()
    );
    let h = spawn(
        spec(&["sh", "-c", &script], RestartPolicy::Always),
        true,
        |_| {},
        stop,
    );
    let s = until(&h, "started", |s| s.state == ProcState::Started).await;
    let pid = s.pid.expect("pid");
    let t0 = Instant::now();
    while !pidfile.exists() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grandchild: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    h.commands.send(Command::Stop).await.expect("send");
    let s = until(&h, "stopped", |s| s.state == ProcState::Stopped).await;
    assert_eq!(
        s.last_exit.and_then(|e| e.signal),
        Some(9),
        "SIGKILL after stop_timeout"
    );
    let alive = |p: i32| nix::sys::signal::kill(Pid::from_raw(p), None).is_ok();
    let t0 = Instant::now();
    while (alive(pid as i32) || alive(grandchild)) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(pid as i32), "child {pid} survived");
    assert!(!alive(grandchild), "grandchild {grandchild} survived");
}

#[tokio::test]
async fn a_bad_command_is_reported_not_retried_in_a_tight_loop() {
    let (_stop_tx, stop) = watch::channel(false);
    let h = spawn(
        spec(&["/nonexistent/binary"], RestartPolicy::Always),
        true,
        |_| {},
        stop,
    );
    let s = until(&h, "an error", |s| s.error.is_some()).await;
    assert!(
        s.error
            .as_deref()
            .is_some_and(|e| e.contains("/nonexistent/binary")),
        "{s:?}"
    );
    assert_eq!(s.state, ProcState::Backoff);
}
