//! Worker threads: one per core, pinned, each with its own monoio runtime.
//!
//! `Plan` turns the CLI flags into concrete cores and a driver, checking everything before any
//! socket is bound. `spawn_workers` starts the threads; each pins itself, builds its runtime
//! (io_uring, or the epoll legacy driver when the operator allowed it) and runs
//! `proxy::worker_loop::run` until its listeners close and its in-flight requests finish.

use std::io;
use std::thread::JoinHandle;

use crate::cli::{parse_cpu_list, Cli, IoDriver};
use crate::proxy::worker::WorkerSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Epoll,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// What the workers will run on.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workers: usize,
    /// Core for each worker, or `None` when not pinning.
    pub cores: Vec<Option<core_affinity::CoreId>>,
    pub driver: Driver,
    pub ring_entries: u32,
}

impl Plan {
    pub fn from_cli(cli: &Cli) -> Result<Plan, String> {
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        let cpus = match &cli.cpu_set {
            Some(list) => {
                let cpus = parse_cpu_list(list)?;
                if let Some(bad) = cpus
                    .iter()
                    .find(|c| !allowed.is_empty() && !allowed.contains(c))
                {
                    return Err(format!(
                        "--cpu-set: CPU {bad} is not available to this process (allowed: {allowed:?})"
                    ));
                }
                cpus
            }
            None if allowed.is_empty() => vec![0],
            None => allowed,
        };
        let workers = match cli.concurrency {
            Some(0) => return Err("--concurrency must be at least 1".into()),
            Some(n) => n,
            None => cpus.len(),
        };
        if cli.ring_entries < 2 || !cli.ring_entries.is_power_of_two() {
            return Err(format!(
                "--ring-entries must be a power of two of at least 2 (got {})",
                cli.ring_entries
            ));
        }
        let cores = (0..workers)
            .map(|w| {
                (!cli.no_pin).then(|| core_affinity::CoreId {
                    id: cpus[w % cpus.len()],
                })
            })
            .collect();
        let driver = choose_driver(cli.io_driver, cli.ring_entries)?;
        Ok(Plan {
            workers,
            cores,
            driver,
            ring_entries: cli.ring_entries,
        })
    }
}

/// Probes io_uring once on the main thread so a refusal is reported before anything starts.
fn choose_driver(wanted: IoDriver, entries: u32) -> Result<Driver, String> {
    match wanted {
        IoDriver::Epoll => Ok(Driver::Epoll),
        IoDriver::Uring | IoDriver::Auto => {
            let probe = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(entries)
                .build();
            match probe {
                Ok(_) => Ok(Driver::IoUring),
                Err(e) if wanted == IoDriver::Auto => {
                    warn!("io_uring is unavailable ({e}); using the epoll driver (--io-driver=auto)");
                    Ok(Driver::Epoll)
                }
                Err(e) => Err(format!(
                    "cannot set up io_uring ({e}); run with --io-driver=auto or --io-driver=epoll to use the epoll driver"
                )),
            }
        }
    }
}

/// Starts one thread per worker spec.
pub fn spawn_workers(plan: &Plan, specs: Vec<WorkerSpec>) -> io::Result<Vec<JoinHandle<()>>> {
    specs
        .into_iter()
        .map(|spec| {
            let core = plan.cores.get(spec.index).copied().flatten();
            let driver = plan.driver;
            let entries = plan.ring_entries;
            std::thread::Builder::new()
                .name(format!("ringway-worker-{}", spec.index))
                .spawn(move || run_worker(spec, core, driver, entries))
        })
        .collect()
}

type UringRuntime = monoio::Runtime<monoio::time::TimeDriver<monoio::IoUringDriver>>;

/// Builds a worker's io_uring runtime. The ring is created and used by this thread only, so it
/// asks the kernel for single-issuer mode with deferred task work: completions are processed when
/// the worker enters the kernel to wait anyway, instead of interrupting it as they arrive. Kernels
/// older than 6.1 refuse those flags; the worker then uses a plain ring.
fn build_uring_runtime(entries: u32) -> std::io::Result<UringRuntime> {
    let mut tuned = io_uring::IoUring::builder();
    tuned
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    let built = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .with_entries(entries)
        .uring_builder(tuned)
        .enable_timer()
        .build();
    match built {
        Ok(rt) => Ok(rt),
        Err(e) => {
            debug!("io_uring with deferred task work refused ({e}); using a plain ring");
            monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(entries)
                .enable_timer()
                .build()
        }
    }
}

fn run_worker(spec: WorkerSpec, core: Option<core_affinity::CoreId>, driver: Driver, entries: u32) {
    let index = spec.index;
    // A worker must not block on stderr: its lines go through the log writer's bounded queue.
    crate::logging::write_through_queue();
    if let Some(core) = core {
        if !core_affinity::set_for_current(core) {
            warn!("worker {index}: could not pin to CPU {}", core.id);
        }
    }
    let result = match driver {
        Driver::IoUring => build_uring_runtime(entries)
            .map(|mut rt| rt.block_on(crate::proxy::worker_loop::run(spec))),
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(|mut rt| rt.block_on(crate::proxy::worker_loop::run(spec))),
    };
    if let Err(e) = result {
        error!(
            "worker {index}: cannot build its {} runtime: {e}",
            driver.name()
        );
    }
}
