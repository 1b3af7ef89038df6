//! kinfrad's life cycle: take what systemd handed over, load config, templates and state, bind,
//! report READY=1, then one loop over signals, watchdog and housekeeping until a graceful stop.

pub mod server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::app::{App, AppParts};
use crate::config::{Config, Overrides};
use crate::pages::Pages;
use crate::state::StateFile;
use crate::systemd::notify::{Boot, Notifier};
use crate::systemd::sockets::{self, Inherited};

/// How often the maintenance hit counter is persisted when it moved.
const HITS_FLUSH: Duration = Duration::from_secs(5);

/// What `kinfrad` was asked to do on its command line.
#[derive(Debug, Clone, Default)]
pub struct DaemonArgs {
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    pub check_config: bool,
}

/// Everything `run` needs; tests build this to run the daemon in-process.
pub struct RunOptions {
    pub config: Config,
    pub overrides: Overrides,
    pub boot: Boot,
    pub inherited: Inherited,
    /// Turning this to `true` stops the daemon like SIGTERM does.
    pub stop: Option<watch::Receiver<bool>>,
    /// Receives the `App` once it is ready (tests use it to inspect state).
    pub ready: Option<tokio::sync::oneshot::Sender<Arc<App>>>,
}

/// Entry point of the `kinfrad` binary. Stays synchronous until systemd's environment is taken.
pub fn main(args: DaemonArgs) -> ExitCode {
    // SAFETY: no other thread exists yet (the runtime is built below).
    let boot = unsafe { Boot::capture() };
    // SAFETY: as above.
    let inherited = unsafe { sockets::take_from_systemd() };
    crate::systemd::logging::init();

    if args.check_config {
        return check_config(&args);
    }
    let inherited = match inherited {
        Ok(i) => i,
        Err(e) => return fail(&boot, anyhow!(e)),
    };
    let config = match Config::load(args.config.as_deref(), &args.overrides) {
        Ok(c) => c,
        Err(e) => return fail(&boot, anyhow!(e)),
    };
    // One worker asked for (TOKIO_WORKER_THREADS=1, e.g. a small VM or a pinned benchmark):
    // a current-thread runtime does the same work without the work-stealing machinery.
    let one = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    let mut builder = if one {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let rt = match builder.enable_all().thread_name("kinfrad").build() {
        Ok(rt) => rt,
        Err(e) => return fail(&boot, anyhow!("cannot start the runtime: {e}")),
    };
    let notifier = boot.notifier.clone();
    let result = rt.block_on(run(RunOptions {
        config,
        overrides: args.overrides.clone(),
        boot,
        inherited,
        stop: None,
        ready: None,
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let boot = Boot {
                notifier,
                ..Boot::default()
            };
            fail(&boot, e)
        }
    }
}

fn fail(boot: &Boot, e: anyhow::Error) -> ExitCode {
    let msg = format!("{e:#}");
    tracing::error!(error = %msg, "kinfrad cannot run");
    eprintln!("kinfrad: error: {msg}");
    boot.notifier.status(&format!("Failed: {msg}"));
    ExitCode::from(1)
}

fn check_config(args: &DaemonArgs) -> ExitCode {
    let cfg = match Config::load(args.config.as_deref(), &args.overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kinfrad: config invalid: {e}");
            return ExitCode::from(1);
        }
    };
    let pages = match Pages::load_with(cfg.templates_dir.as_deref(), &cfg.page_config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kinfrad: templates invalid: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = crate::upstream::client::CustomClient::new(cfg.upstream_ca_file.as_deref()) {
        eprintln!(
            "kinfrad: config invalid: {}: key `upstream_ca_file`: {e}",
            cfg.source
        );
        return ExitCode::from(1);
    }
    if let Some(f) = &cfg.fleet
        && let Err(e) = crate::app::fleet::etcd_client(f)
    {
        eprintln!("kinfrad: config invalid: {}: {e}", cfg.source);
        return ExitCode::from(1);
    }
    println!("config OK: {}", cfg.source);
    println!(
        "  listen:          {}",
        cfg.listen
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  control socket:  {}", cfg.control_socket.display());
    println!("  state directory: {}", cfg.state_dir.display());
    if let Some(f) = &cfg.fleet {
        println!(
            "  fleet:           node {} on {} (prefix {})",
            f.node,
            f.endpoints.join(", "),
            f.prefix
        );
    }
    for (name, from) in &pages.sources {
        println!("  template {name}: {from}");
    }
    for s in &cfg.services {
        let routes: Vec<String> = s.routes.iter().map(|r| r.to_string()).collect();
        println!(
            "  service {}: {} <- {}",
            s.name,
            s.url_text,
            routes.join(", ")
        );
    }
    ExitCode::SUCCESS
}

fn to_tokio_tcp(l: std::net::TcpListener) -> anyhow::Result<tokio::net::TcpListener> {
    l.set_nonblocking(true)?;
    Ok(tokio::net::TcpListener::from_std(l)?)
}

/// Run the daemon until SIGTERM/SIGINT (or `opts.stop`).
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        config,
        overrides,
        boot,
        inherited,
        stop,
        ready,
    } = opts;
    let notifier = boot.notifier.clone();
    for note in &inherited.notes {
        tracing::info!("{note}");
    }
    if !inherited.conns.is_empty() {
        // Ours now: systemd's copies would keep them open after we close them.
        notifier.remove_stored(crate::systemd::sockets::CONN);
    }

    let pages = Pages::load_with(config.templates_dir.as_deref(), &config.page_config)
        .map_err(|e| anyhow!(e))?;
    let loaded = StateFile::open(&config.state_dir).context("state directory")?;
    if let Some(p) = &loaded.problem {
        tracing::error!(problem = %p, "state file problem");
    }
    let token_path = config.token_path();
    let token =
        crate::state::token::load_or_create(&token_path, config.admin_token_file.is_none())?;

    // Listeners: systemd's first, else our own.
    let http_std = if inherited.http.is_empty() {
        let mut v = Vec::new();
        for addr in &config.listen {
            let l =
                sockets::bind_http(*addr).with_context(|| format!("cannot listen on {addr}"))?;
            tracing::info!(%addr, "http socket bound");
            v.push(l);
        }
        v
    } else {
        inherited.http
    };
    let mut http_addrs = Vec::new();
    let mut http = Vec::new();
    for l in http_std {
        http_addrs.push(l.local_addr()?);
        http.push(to_tokio_tcp(l)?);
    }
    let (control_std, own_control) = match inherited.control {
        Some(l) => (l, None),
        None => {
            let p = &config.control_socket;
            let l = sockets::bind_control(p)
                .with_context(|| format!("cannot bind control socket {}", p.display()))?;
            tracing::info!(path = %p.display(), "control socket bound");
            (l, Some(p.clone()))
        }
    };
    let control_path = control_std
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_else(|| config.control_socket.display().to_string());
    control_std.set_nonblocking(true)?;
    let control = tokio::net::UnixListener::from_std(control_std)?;

    let client = crate::upstream::client::CustomClient::new(config.upstream_ca_file.as_deref())
        .map_err(|e| anyhow!(e))?;
    tracing::debug!(roots = client.roots, "TLS roots loaded for custom pages");
    let access = crate::control::Access::new(&config.control_group);
    let grace = config.shutdown_grace;
    let app = Arc::new(
        App::new(AppParts {
            config,
            overrides,
            pages,
            state: loaded.state,
            state_file: loaded.file,
            state_problem: loaded.problem,
            token,
            notifier: notifier.clone(),
            http_addrs,
            control_path,
            client,
        })
        .map_err(|e| anyhow!(e))?,
    );

    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;

    let (stop_tx, stop_rx) = watch::channel(false);
    // The health API reads the state file's last check: have one before the first request.
    app.check_state_file();
    // Supervisors first: a service's probe must find its process attached.
    app.sync_supervisors();
    app.sync_probes();
    app.resume_drain();
    app.start_schedule(stop_rx.clone());
    // The fleet: the intent shared through etcd (state.json holds the last one applied, so
    // this host serves it already, whether etcd answers or not).
    let fleet_task = tokio::spawn(crate::app::fleet::run(app.clone(), stop_rx.clone()));
    // Under systemd, connections idle at the stop are kept in its descriptor store for the
    // next kinfrad (kinfra.service has FileDescriptorStoreMax=); elsewhere they are closed.
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel();
    let handover = crate::daemon::server::Handover {
        resumed: inherited.conns,
        idle: notifier.enabled().then_some(idle_tx),
    };
    let http_task = tokio::spawn(crate::daemon::server::serve(
        app.clone(),
        http,
        stop_rx.clone(),
        grace,
        handover,
    ));
    let events_task = tokio::spawn(crate::web::events::run(app.clone(), stop_rx.clone()));
    let control_task = tokio::spawn(crate::control::serve(
        app.clone(),
        control,
        access,
        stop_rx.clone(),
    ));

    notifier.ready(&app.status_line());
    tracing::info!(listen = ?app.http_addrs, control = %app.control_path, status = %app.status_line(), "kinfrad ready");
    if let Some(tx) = ready {
        let _ = tx.send(app.clone());
    }

    let mut watchdog =
        tokio::time::interval(boot.watchdog_interval.unwrap_or(Duration::from_secs(3600)));
    watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watchdog_on = boot.watchdog_interval.is_some();
    if let Some(us) = boot.watchdog_usec {
        tracing::info!(watchdog_usec = us, "systemd watchdog enabled");
    }
    let mut flush = tokio::time::interval(HITS_FLUSH);
    let mut external_stop = stop;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = sighup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = app.reload().await;
            }
            _ = watchdog.tick(), if watchdog_on => notifier.watchdog(),
            _ = flush.tick() => {
                app.check_state_file();
                app.flush_hits().await;
                app.flush_drain().await;
            }
            _ = wait_stop(&mut external_stop) => { tracing::info!("stop requested"); break; }
        }
    }

    notifier.stopping();
    let _ = stop_tx.send(true);
    app.stop_probes();
    let _ = control_task.await;
    let _ = events_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), fleet_task).await;
    if tokio::time::timeout(grace + Duration::from_secs(1), http_task)
        .await
        .is_err()
    {
        tracing::warn!("HTTP server did not stop in time");
    }
    let mut idle = Vec::new();
    while let Ok(conn) = idle_rx.try_recv() {
        idle.push(conn);
    }
    store_idle(&notifier, &idle);
    drop(idle);
    // In-flight requests are done: now the services kinfrad runs may go.
    app.stop_supervisors().await;
    app.flush_hits().await;
    app.flush_drain().await;
    if let Some(p) = own_control {
        let _ = std::fs::remove_file(p);
    }
    tracing::info!("kinfrad stopped");
    Ok(())
}

/// Hand the connections idle at the stop to systemd's descriptor store (FDNAME=conn): the
/// next kinfrad serves them on, and their clients never see them close.
fn store_idle(notifier: &Notifier, idle: &[tokio::net::TcpStream]) {
    use std::os::fd::AsFd;
    if idle.is_empty() {
        return;
    }
    let fds: Vec<_> = idle.iter().map(|c| c.as_fd()).collect();
    match notifier.store_fds(crate::systemd::sockets::CONN, &fds) {
        Ok(n) => tracing::info!(
            connections = n,
            "idle connections handed to systemd for the next kinfrad"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand idle connections to systemd; closing them")
        }
    }
}

async fn wait_stop(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let ok = rx.wait_for(|v| *v).await.is_ok();
            if !ok {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}
