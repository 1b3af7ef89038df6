//! Restarts under load: the shipped units under the throwaway manager, kinfrad proxying to an
//! upstream while clients send a steady ~1,000 requests a second — a couple of hundred over
//! kept-open connections, the rest on a fresh connection each — and `systemctl restart
//! kinfra.service` five times in the middle, then `systemctl reload`. Not one request may fail:
//! the listening socket is systemd's (new connections wait in its backlog), requests in flight
//! finish, and connections idle at the stop go to systemd's descriptor store
//! (`FileDescriptorStoreMax=`) and are served on by the next kinfrad, so no client sees its
//! connection close. The latencies (p50, p99, max; overall and around the restarts) are printed
//! for the record, not asserted.

use std::time::{Duration, Instant};

use crate::cgroups::Guard;
use crate::common::{Reply, Seen, Upstream, get};
use crate::load;
use crate::manager::{Env, start_manager, write_units};
use crate::{manager_binary, skip_reason};

const KEEPALIVE: usize = 200;
const FRESH: usize = 40;
/// Each client's time between two requests: 240 clients x 4/s ≈ 960 requests a second.
const PACE: Duration = Duration::from_millis(250);
const RESTARTS: usize = 5;

#[test]
fn restarts_and_reloads_under_load_fail_no_request() {
    if let Some(why) = skip_reason() {
        println!("SKIP systemd_user: {why}");
        return;
    }
    let manager = manager_binary().expect("manager");
    let mut guard = Guard::acquire();
    let env = Env::new(guard.tmp.path());
    write_units(&env);
    let up = Upstream::start(0, |s: &Seen| Reply::echo("web", s));
    env.append_config(&format!(
        "[[service]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}\"\nroutes = [\"/\"]\n\
         health_check = {{ path = \"/_probe\", interval = \"1s\", timeout = \"1s\" }}\n",
        up.port()
    ));
    start_manager(&env, &mut guard, &manager);
    env.systemctl_ok(&["start", "kinfra.socket", "kinfra-control.socket"]);
    let first = get(env.addr, "/load");
    assert_eq!(first.status, 200, "{}\n{}", first.text(), env.diag());

    let addr = env.addr;
    let load = std::thread::spawn(move || {
        load::run(addr, "web", KEEPALIVE, FRESH, PACE, Duration::from_secs(18))
    });
    // Restarts in the middle, 2.2 s apart (systemd's default start limit allows 5 starts in
    // 10 s; the first start counts too), after the load has settled; then a reload.
    std::thread::sleep(Duration::from_secs(3));
    let mut windows = Vec::new();
    let mut pids = vec![env.prop("kinfra.service", "MainPID")];
    for _ in 0..RESTARTS {
        let t0 = Instant::now();
        env.systemctl_ok(&["restart", "kinfra.service"]);
        windows.push((t0, Instant::now() + Duration::from_millis(300)));
        pids.push(env.prop("kinfra.service", "MainPID"));
        std::thread::sleep(Duration::from_millis(2200));
    }
    let t0 = Instant::now();
    env.systemctl_ok(&["reload", "kinfra.service"]);
    let reload = (t0, Instant::now() + Duration::from_millis(300));
    let report = load.join().expect("load");

    pids.dedup();
    assert_eq!(
        pids.len(),
        RESTARTS + 1,
        "every restart a new kinfrad: {pids:?}"
    );
    let st = env.show("kinfra.service");
    assert_eq!(st["ActiveState"], "active", "{st:?}\n{}", env.diag());
    let log = std::fs::read_to_string(&env.log).unwrap_or_default();
    let handed = log.matches("client connections handed over").count();

    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    let in_restart = |at: Instant| windows.iter().any(|(a, b)| at >= *a && at <= *b);
    let in_reload = |at: Instant| at >= reload.0 && at <= reload.1;
    eprintln!(
        "{} requests ({} keep-alive clients, {} fresh-connection clients, {} restarts, 1 reload): \
         {} failed, {} resets; restarts that took over idle connections: {handed}",
        report.samples.len(),
        KEEPALIVE,
        FRESH,
        RESTARTS,
        report.failures().len(),
        report.resets()
    );
    eprintln!(
        "latency overall: p50 {} p99 {} max {}; around restarts: p50 {} p99 {} max {}; around the reload: p99 {}",
        ms(report.quantile(0.5, |_| true)),
        ms(report.quantile(0.99, |_| true)),
        ms(report.quantile(1.0, |_| true)),
        ms(report.quantile(0.5, in_restart)),
        ms(report.quantile(0.99, in_restart)),
        ms(report.quantile(1.0, in_restart)),
        ms(report.quantile(0.99, in_reload)),
    );
    let failures = report.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, e.g. {:?}\n{}",
        failures.len(),
        report.samples.len(),
        failures
            .iter()
            .take(5)
            .map(|s| &s.failure)
            .collect::<Vec<_>>(),
        env.diag()
    );
    assert!(
        report.samples.len() > 10_000,
        "{} requests only",
        report.samples.len()
    );
    assert!(
        handed >= RESTARTS,
        "idle connections were not handed over:\n{log}"
    );
    env.systemctl_ok(&[
        "stop",
        "kinfra.service",
        "kinfra.socket",
        "kinfra-control.socket",
    ]);
}
