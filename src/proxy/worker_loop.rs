//! A worker thread's main future: builds its [`Worker`], runs its listeners' accept loops, a
//! once-a-second housekeeping task, and waits for in-flight requests when draining.
//!
//! Apart from `worker.rs` (the state every request borrows) so the state has no dependency on
//! the connection code that the accept loop starts; the request path imports the state, and
//! only this module imports the request path's entry point (`connection::serve`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::bufpool::BufPool;
use crate::proxy::worker::{share_of, DownstreamCx, Worker, WorkerSpec};
use crate::rng::FastRng;
use crate::stats::dispatcher::LoopProbe;
use crate::stats::histograms::HistogramId;
use crate::upstream::lb::LoadBalancer;
use crate::upstream::pool::Pool;
/// Buffers a worker keeps for reuse at most (at the default 16 KiB, 4 MiB per worker).
const BUF_POOL_MAX_FREE: usize = 256;

/// The worker's state from what the main thread handed over, and its listener sockets.
pub(crate) fn build(spec: WorkerSpec) -> (Rc<Worker>, Vec<std::net::TcpListener>) {
    let cfg = spec.shared.config.clone();
    let seed = 0x9e37_79b9_7f4a_7c15u64
        ^ (spec.index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    let bufs = Rc::new(RefCell::new(BufPool::new(
        spec.shared.tuning.read_buffer_bytes.max(4096),
        BUF_POOL_MAX_FREE,
    )));
    let worker = Rc::new(Worker {
        index: spec.index,
        bufs: bufs.clone(),
        shared: spec.shared.clone(),
        membership: RefCell::new(spec.membership),
        pool: RefCell::new(Pool::new(
            spec.index,
            spec.shared.stats.clone(),
            spec.shared.tuning.max_idle_per_endpoint,
        )),
        h2pool: RefCell::new(crate::http2::client::H2Pool::new(cfg.clusters.len(), bufs)),
        lbs: RefCell::new(
            cfg.clusters
                .iter()
                .enumerate()
                .map(|(i, c)| LoadBalancer::new(c.lb_policy, seed ^ (i as u64 + 1)))
                .collect(),
        ),
        rng: RefCell::new(FastRng::new(seed)),
        histograms: RefCell::new(spec.histograms),
        access_log: RefCell::new(spec.access_log),
        tls: RefCell::new(spec.tls),
        in_flight: Cell::new(0),
        workers: spec.shared.stats.workers,
        // The limits are process-wide; workers share nothing, so each enforces an even share.
        cx_limit: spec
            .shared
            .tuning
            .max_connections
            .map(|n| share_of(n, spec.shared.stats.workers)),
        listener_cx_limits: cfg
            .listeners
            .iter()
            .map(|l| {
                l.connection_limit.map(|n| {
                    share_of(
                        u32::try_from(n).unwrap_or(u32::MAX),
                        spec.shared.stats.workers,
                    )
                })
            })
            .collect(),
        cx_open: Cell::new(0),
        listener_cx_open: cfg.listeners.iter().map(|_| Cell::new(0)).collect(),
    });
    (worker, spec.listeners)
}

/// The worker's main future: accept on every listener until they close, then wait for in-flight
/// requests to finish.
pub async fn run(spec: WorkerSpec) {
    let index = spec.index;
    let (worker, listeners) = build(spec);
    let open_listeners = Rc::new(Cell::new(0usize));
    for (li, std_listener) in listeners.into_iter().enumerate() {
        match monoio::net::TcpListener::from_std(std_listener) {
            Ok(l) => {
                open_listeners.set(open_listeners.get() + 1);
                monoio::spawn(accept_loop(worker.clone(), li, l, open_listeners.clone()));
            }
            Err(e) => error!("worker {index}: listener {li}: {e}"),
        }
    }

    let probe_stop = Rc::new(Cell::new(false));
    monoio::spawn(loop_probe(worker.clone(), probe_stop.clone()));

    // Housekeeping until the listeners are closed and nothing is in flight.
    let mut memory = MemoryReturn::default();
    let mut last_sweep = (
        Instant::now(),
        worker.membership.borrow().current.generation,
    );
    loop {
        let tick = if open_listeners.get() == 0 {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        };
        monoio::time::sleep(tick).await;
        housekeeping(&worker, &mut last_sweep);
        memory.after_tick(worker.cx_open.get());
        if open_listeners.get() == 0 && worker.in_flight.get() == 0 {
            break;
        }
    }
    probe_stop.set(true);
    worker.shared.stats.loops.stop(worker.index);
    worker.pool.borrow_mut().clear();
    worker.h2pool.borrow_mut().clear();
    worker.histograms.borrow_mut().flush();
    let mut log = worker.access_log.borrow_mut();
    if let Some(log) = log.as_mut() {
        log.flush();
    }
}

/// The worker's loop probe (`stats::dispatcher`): wakes every [`PROBE_PERIOD`], touches the
/// watchdog's heartbeat, and with `enable_dispatcher_stats` records how late the timer was
/// handled (`poll_delay_us`) and how long one pass over the ready tasks took
/// (`loop_duration_us`).
///
/// [`PROBE_PERIOD`]: crate::stats::dispatcher::PROBE_PERIOD
pub(crate) async fn loop_probe(worker: Rc<Worker>, stop: Rc<Cell<bool>>) {
    let stats = worker.shared.stats.clone();
    let record = worker.shared.config.dispatcher_stats;
    let index = worker.index;
    let mut probe = LoopProbe::new(Instant::now());
    stats.loops.touch(index, Instant::now());
    while !stop.get() {
        monoio::time::sleep_until(probe.deadline().into()).await;
        let woke = Instant::now();
        stats.loops.touch(index, woke);
        let delay = probe.woke(woke);
        if !record {
            continue;
        }
        // One pass: every task ready now runs before this one is polled again (a real yield,
        // to the back of the run queue; see `cooperative`).
        let pass = Instant::now();
        crate::cooperative::yield_now().await;
        let pass = pass.elapsed();
        let mut h = worker.histograms.borrow_mut();
        h.record(HistogramId::PollDelay(index), delay.as_micros() as u64);
        h.record(HistogramId::LoopDuration(index), pass.as_micros() as u64);
    }
}

/// Connections that must have closed since the high-water mark before freed memory is handed
/// back, so the call (a walk of this thread's heap) happens after a steep fall, not every tick.
const RETURN_MEMORY_AFTER_CLOSED: u32 = 256;

/// Gives freed memory back to the OS after the worker's open connections fell steeply (to at
/// most half their high-water mark and by at least [`RETURN_MEMORY_AFTER_CLOSED`]) or to none.
/// Ten thousand idle keep-alive connections hold tens of MiB; once they close, the RSS follows.
#[derive(Default)]
struct MemoryReturn {
    high_water: u32,
}

impl MemoryReturn {
    fn after_tick(&mut self, open: u32) {
        self.high_water = self.high_water.max(open);
        let fallen = self.high_water - open;
        let steep = fallen >= RETURN_MEMORY_AFTER_CLOSED && open <= self.high_water / 2;
        if fallen > 0 && (steep || open == 0) {
            crate::sys::return_free_memory();
            self.high_water = open;
        }
    }
}

fn housekeeping(worker: &Rc<Worker>, last_sweep: &mut (Instant, u64)) {
    let now = Instant::now();
    worker.membership.borrow_mut().refresh();
    worker.tls.borrow_mut().refresh();
    let snapshot = worker.membership.borrow().current.clone();
    // Sweep every second, and at once after a membership change (adopted here or at a request
    // start) so idle connections to removed endpoints close promptly.
    if now.duration_since(last_sweep.0) >= Duration::from_secs(1)
        || snapshot.generation != last_sweep.1
    {
        let periodic = now.duration_since(last_sweep.0) >= Duration::from_secs(1);
        *last_sweep = (now, snapshot.generation);
        let is_member = |cluster: usize, addr: &std::net::SocketAddr| {
            snapshot
                .clusters
                .get(cluster)
                .is_some_and(|m| m.endpoints.iter().any(|e| e.addr == *addr))
        };
        worker.pool.borrow_mut().sweep(now, is_member);
        worker.h2pool.borrow_mut().sweep(is_member);
        // Histograms go to the admin thread once a second: each flush copies them.
        if periodic {
            worker.histograms.borrow_mut().flush();
        }
    }
    if let Some(log) = worker.access_log.borrow_mut().as_mut() {
        log.flush();
    }
}

/// First pause after a failed accept; doubled on each failure in a row up to
/// [`ACCEPT_BACKOFF_MAX`], back to this after a success.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause between accepts that fail (EMFILE): long enough not to spin on a full fd table,
/// short enough that connections waiting in the backlog are taken soon after fds free up.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);
/// At most one `accept failed` line per this interval per accept loop; the rest are counted.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);

async fn accept_loop(
    worker: Rc<Worker>,
    listener_index: usize,
    listener: monoio::net::TcpListener,
    open: Rc<Cell<usize>>,
) {
    let stats = worker.shared.stats.clone();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // When the last `accept failed` line was written, and failures since then not written.
    let mut last_report: Option<Instant> = None;
    let mut suppressed = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                if worker.draining() {
                    break;
                }
                let slot = match DownstreamCx::admit(&worker, listener_index) {
                    Ok(slot) => slot,
                    Err(overflow) => {
                        // Over a connection limit: close at once (dropping the stream) and count.
                        if let Some(ls) = stats.listeners.get(listener_index) {
                            ls.inc(worker.index, overflow);
                        }
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let w = worker.clone();
                monoio::spawn(async move {
                    super::connection::serve(&w, listener_index, stream, peer).await;
                    drop(slot);
                });
            }
            Err(e) => {
                if worker.draining() {
                    break;
                }
                // EMFILE and friends fail again at once: back off instead of spinning, and say
                // so at most once a second (at the fd limit this used to be ~100 lines a second).
                let now = Instant::now();
                let due = last_report.is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL);
                if due {
                    warn!(
                        "worker {}: accept failed: {e} ({suppressed} more failure(s) not logged since the last report; retrying in {} ms)",
                        worker.index,
                        backoff.as_millis()
                    );
                    last_report = Some(now);
                    suppressed = 0;
                } else {
                    suppressed += 1;
                }
                monoio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    open.set(open.get().saturating_sub(1));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    use super::*;
    use crate::proxy::cancellation_tests::{bootstrap_yaml, worker_from_yaml};
    use crate::stats::dispatcher::spawn_watchdog;

    /// A worker whose loop is blocked for 300 ms: the watchdog thread counts one miss (no mega
    /// miss), and the probe's poll delay shows the block once the loop runs again.
    #[test]
    fn a_blocked_worker_counts_a_watchdog_miss() {
        let routes =
            "              - match: {prefix: /}\n                direct_response: {status: 200}\n";
        let yaml = format!(
            "enable_dispatcher_stats: true\n{}",
            bootstrap_yaml(routes, "")
        );
        let worker = worker_from_yaml(&yaml);
        let stats = worker.shared.stats.clone();
        let stop_watchdog = Arc::new(AtomicBool::new(false));
        spawn_watchdog(stats.loops.clone(), stop_watchdog.clone()).unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let stop = Rc::new(Cell::new(false));
            monoio::spawn(loop_probe(worker.clone(), stop.clone()));
            monoio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                stats.loops.misses(0),
                0,
                "a running loop was judged stalled"
            );
            // Block the loop, as a long computation on the worker would.
            std::thread::sleep(Duration::from_millis(300));
            monoio::time::sleep(Duration::from_millis(100)).await;
            stop.set(true);
        });
        stop_watchdog.store(true, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stats.loops.misses(0), 1);
        assert_eq!(stats.loops.mega_misses(0), 0);

        worker.histograms.borrow_mut().flush();
        let (mut delay_max, mut passes) = (0, 0);
        stats.histograms.with_merged(|id, h| match id {
            HistogramId::PollDelay(0) => delay_max = h.max(),
            HistogramId::LoopDuration(0) => passes = h.len(),
            _ => {}
        });
        assert!(delay_max >= 200_000, "poll delay max {delay_max} us");
        assert!(passes >= 10, "{passes} loop passes sampled");
    }
}
