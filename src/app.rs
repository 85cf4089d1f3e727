//! Start-up and shutdown of a whole Ringway process (everything `main` does, testable).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{AccessLogSink, Format};
use crate::cli::{Cli, Mode};
use crate::config::{self, Loaded};
use crate::listener::BoundListener;
use crate::logging::{self, Level};
use crate::proxy::router::Router;
use crate::proxy::worker::{Shared, Tuning, WorkerSpec};
use crate::runtime::{spawn_workers, Plan};
use crate::server::{Lifecycle, ServerInfo, ServerState, VERSION};
use crate::stats::Stats;
use crate::upstream::membership::MembershipHub;

/// Runs the process; `Err` carries the message printed before exiting non-zero.
pub fn run(cli: Cli) -> Result<(), String> {
    let level = Level::parse(&cli.log_level).ok_or_else(|| {
        format!(
            "--log-level: '{}' is not one of trace, debug, info, warning, error, critical, off",
            cli.log_level
        )
    })?;
    logging::set_level(level);

    let loaded = load_config(&cli)?;
    if cli.mode == Mode::Validate {
        println!("configuration OK");
        return Ok(());
    }
    let plan = Plan::from_cli(&cli)?;
    serve(cli, plan, loaded)
}

fn load_config(cli: &Cli) -> Result<Loaded, String> {
    let result = match (&cli.config_yaml, &cli.config_path) {
        (Some(_), Some(_)) => {
            return Err("pass either -c/--config-path or --config-yaml, not both (Ringway does not merge configurations)".into())
        }
        (Some(yaml), None) => config::load_str(yaml),
        (None, Some(path)) => config::load_file(path),
        (None, None) => {
            return Err("no configuration: pass -c/--config-path FILE or --config-yaml YAML".into())
        }
    };
    result.map_err(|errors| errors.to_string().trim_end().to_owned())
}

fn serve(cli: Cli, plan: Plan, loaded: Loaded) -> Result<(), String> {
    let workers = plan.workers;
    // Workers log through the writer thread's bounded queue (see `logging`), never to stderr.
    logging::start_writer().map_err(|e| format!("cannot start the log writer: {e}"))?;
    let bootstrap = Arc::new(loaded.bootstrap);
    let stats = Stats::new(&bootstrap, workers);

    // Access logs: one writer thread for all files; formats compiled once.
    let mut paths = Vec::new();
    let mut access_logs = Vec::new();
    for (li, l) in bootstrap.listeners.iter().enumerate() {
        let mut list = Vec::new();
        for (ai, log) in l.hcm.access_logs.iter().enumerate() {
            let format = match &log.format {
                Some(f) => Format::parse(f).map_err(|e| {
                    format!("error: static_resources.listeners[{li}].filter_chains[0].filters[0].typed_config.access_log[{ai}]: {e}")
                })?,
                None => Format::envoy_default(),
            };
            let index = match paths.iter().position(|p| p == &log.path) {
                Some(i) => i,
                None => {
                    paths.push(log.path.clone());
                    paths.len() - 1
                }
            };
            list.push((index, format));
        }
        access_logs.push(list);
    }
    let sink = if paths.is_empty() {
        None
    } else {
        Some(AccessLogSink::start(paths).map_err(|e| format!("access log: {e}"))?)
    };

    // Membership: literal endpoints now, DNS names resolved and EDS files read before serving.
    let hub = MembershipHub::new(&bootstrap, stats.clone(), workers);
    crate::control::resolve_dns_clusters(&bootstrap, &hub)?;
    let eds = crate::control::load_eds_clusters(&bootstrap, &hub)?;

    // TLS: every listener's server configs and every cluster's client config, built before binding
    // so a certificate that fails now stops start-up.
    let mut server_tls = crate::tls::reload::ServerTlsBuilder::new(&bootstrap)?;
    let mut upstream_tls = Vec::with_capacity(bootstrap.clusters.len());
    for c in &bootstrap.clusters {
        upstream_tls.push(match &c.tls {
            Some(t) => Some(Arc::new(
                crate::tls::client::ClusterTls::new(t, c.protocol)
                    .map_err(|e| format!("cluster '{}': transport_socket: {e}", c.name))?,
            )),
            None => None,
        });
    }

    // Bind everything before starting any thread that serves. The admin address is bound later
    // (by the admin thread's spawn), so it is probed first: a taken admin port stops start-up
    // before any listener socket exists.
    if let Some(admin) = &bootstrap.admin {
        crate::listener::ensure_unclaimed(admin.address)
            .map_err(|e| format!("admin: cannot bind {}: {e}", admin.address))?;
    }
    let mut bound = Vec::new();
    for l in &bootstrap.listeners {
        let b = BoundListener::bind(&l.name, l.address, l.backlog, workers)
            .map_err(|e| format!("listener '{}': cannot bind {}: {e}", l.name, l.address))?;
        bound.push(b);
    }

    let lifecycle = Lifecycle::new(std::thread::current());
    let draining = Arc::new(AtomicBool::new(false));
    let state = Arc::new(ServerState {
        info: ServerInfo {
            version: VERSION,
            concurrency: workers,
            io_driver: plan.driver.name(),
            command_line: std::env::args().collect(),
            options: cli.options(),
        },
        config: bootstrap.clone(),
        raw_config: loaded.raw,
        stats: stats.clone(),
        lifecycle,
        membership: hub.clone(),
    });
    if let Some(admin) = &bootstrap.admin {
        let (_addr, _thread) = crate::admin::spawn(admin.address, state.clone())
            .map_err(|e| format!("admin: cannot bind {}: {e}", admin.address))?;
    }
    crate::control::spawn(bootstrap.clone(), hub.clone(), eds);

    crate::upstream::health::spawn(
        bootstrap.clone(),
        hub.clone(),
        stats.clone(),
        upstream_tls.clone(),
    );
    install_signal_handlers(state.clone())?;

    let shared = Arc::new(Shared {
        config: bootstrap.clone(),
        stats: stats.clone(),
        routers: Router::per_listener(&bootstrap),
        access_logs,
        draining: draining.clone(),
        tuning: Tuning {
            read_buffer_bytes: cli.read_buffer_bytes.max(1024),
            body_chunk_bytes: cli.body_chunk_bytes.max(1024),
            retry_buffer_bytes: cli.retry_buffer_bytes,
            max_idle_per_endpoint: cli.max_idle_per_endpoint,
            // The flag wins over the runtime key; config values fit in u32 (checked on load).
            max_connections: cli.max_connections.or_else(|| {
                bootstrap
                    .global_downstream_max_connections
                    .and_then(|n| u32::try_from(n).ok())
            }),
        },
        upstream_tls,
    });
    let mut per_listener: Vec<Vec<std::net::TcpListener>> =
        bound.iter_mut().map(BoundListener::take_sockets).collect();
    let mut specs = Vec::with_capacity(workers);
    for index in 0..workers {
        let listeners = per_listener
            .iter_mut()
            .map(|socks| socks.remove(0))
            .collect();
        specs.push(WorkerSpec {
            index,
            shared: shared.clone(),
            listeners,
            membership: hub.subscribe(),
            histograms: stats
                .histograms
                .worker(bootstrap.clusters.len(), bootstrap.listeners.len()),
            access_log: sink.as_ref().map(|s| s.worker(stats.clone(), index)),
            tls: server_tls.subscribe(),
        });
    }
    server_tls.spawn();
    let handles = spawn_workers(&plan, specs).map_err(|e| format!("cannot start workers: {e}"))?;
    let watchdog_stop = Arc::new(AtomicBool::new(false));
    crate::stats::dispatcher::spawn_watchdog(stats.loops.clone(), watchdog_stop.clone())
        .map_err(|e| format!("cannot start the watchdog thread: {e}"))?;
    for l in &bound {
        info!("listener '{}' on {}", l.name, l.local_addr);
    }
    info!(
        "ringway {VERSION} serving with {workers} worker(s) on {}",
        plan.driver.name()
    );

    // Sleep until asked to stop. `POST /drain_listeners` drains without stopping, as Envoy's
    // does: the listeners close, connections drain (Connection: close, HTTP/2 GOAWAY), and the
    // process stays up with its admin until a shutdown is asked for.
    let drain_listeners = || {
        draining.store(true, std::sync::atomic::Ordering::Release);
        for l in &bound {
            l.stop_accepting();
        }
    };
    let mut listeners_drained = false;
    while !state.lifecycle.shutdown_requested() {
        if !listeners_drained && state.lifecycle.is_draining() {
            info!("draining listeners");
            drain_listeners();
            listeners_drained = true;
        }
        std::thread::park_timeout(Duration::from_millis(500));
    }

    // Drain.
    info!("draining (up to {} s)", cli.drain_time_s);
    state.lifecycle.start_draining();
    drain_listeners();
    let deadline = Instant::now() + Duration::from_secs(cli.drain_time_s);
    for h in handles {
        while !h.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if h.is_finished() {
            let _ = h.join();
        } else {
            warn!("drain time expired with requests still in flight");
            break;
        }
    }
    watchdog_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(sink) = sink {
        sink.shutdown();
    }
    // Workers' last lines first, so "shut down" is the last line.
    logging::flush(Duration::from_secs(1));
    info!("shut down");
    Ok(())
}

fn install_signal_handlers(state: Arc<ServerState>) -> Result<(), String> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("ringway-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!("received signal {sig}");
                state.lifecycle.request_shutdown();
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(())
}
