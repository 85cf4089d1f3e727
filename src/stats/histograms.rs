//! Latency histograms: recorded worker-locally, merged by the admin thread on read.
//!
//! An HdrHistogram is not a concurrent structure, so each worker owns its own set (a [`Batch`] in
//! [`WorkerHistograms`]) and records into it without synchronisation. Once a second the worker
//! offers the batch to the admin side through its own one-slot hand-off ([`HistogramSink`] keeps
//! one per worker). The hand-off is bounded on purpose: the admin thread only empties it when
//! `/stats` renders, and with nobody scraping an unbounded queue grew by a full histogram copy per
//! worker per second. Here, when the slot is still full the worker keeps recording into the batch
//! it has, so nothing is lost and nothing grows: each worker owns at most three batches (the one
//! it records into, one in the slot, one emptied batch on its way back for reuse).
//!
//! The worker never blocks and never takes a lock: `try_send` on a bounded std channel is a
//! lock-free slot write unless a receiver is parked in `recv`, and the admin side only ever uses
//! `try_recv`. Emptied batches come back over a second one-slot channel, so in steady state the
//! hand-off allocates nothing.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Which histogram a delta belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramId {
    /// `cluster.<name>.upstream_rq_time`, by cluster index.
    UpstreamRqTime(usize),
    /// `http.<stat_prefix>.downstream_rq_time`, by listener index.
    DownstreamRqTime(usize),
    /// `listener_manager.worker_<i>.dispatcher.loop_duration_us`, by worker index.
    LoopDuration(usize),
    /// `listener_manager.worker_<i>.dispatcher.poll_delay_us`, by worker index.
    PollDelay(usize),
}

impl HistogramId {
    /// Microseconds per unit of the histogram's name: request times are in milliseconds (as
    /// Envoy's), the loop figures in microseconds.
    pub fn micros_per_unit(self) -> f64 {
        match self {
            HistogramId::UpstreamRqTime(_) | HistogramId::DownstreamRqTime(_) => 1000.0,
            HistogramId::LoopDuration(_) | HistogramId::PollDelay(_) => 1.0,
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits. Such a histogram is a few hundred KiB, which is why
    // batches are recycled rather than copied. The bounds are constants, so creation cannot fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).expect("HdrHistogram with 3 significant digits is always valid")
    })
}

/// The worker loop's own figures: sampled ~100 times a second, so two significant digits
/// (a few KiB per histogram) describe them well enough.
fn new_loop_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap_or_else(|_| {
        Histogram::new(2).expect("HdrHistogram with 2 significant digits is always valid")
    })
}

/// One worker's histograms for every cluster and listener and its own loop: the unit handed
/// to the admin.
pub struct Batch {
    upstream: Vec<Histogram<u64>>,
    downstream: Vec<Histogram<u64>>,
    loop_duration: Histogram<u64>,
    poll_delay: Histogram<u64>,
}

impl Batch {
    fn new(clusters: usize, listeners: usize) -> Batch {
        Batch {
            upstream: (0..clusters).map(|_| new_histogram()).collect(),
            downstream: (0..listeners).map(|_| new_histogram()).collect(),
            loop_duration: new_loop_histogram(),
            poll_delay: new_loop_histogram(),
        }
    }

    fn reset(&mut self) {
        self.upstream.iter_mut().for_each(Histogram::reset);
        self.downstream.iter_mut().for_each(Histogram::reset);
        self.loop_duration.reset();
        self.poll_delay.reset();
    }
}

/// A worker's own histograms, in microseconds.
pub struct WorkerHistograms {
    current: Batch,
    /// An emptied batch ready to replace `current` at the next hand-off.
    spare: Option<Batch>,
    dirty: bool,
    /// The worker's one-slot hand-off to the admin thread.
    tx: SyncSender<Batch>,
    /// Emptied batches coming back from the admin thread.
    ret: Receiver<Batch>,
    /// Batches this worker ever allocated (the hand-off's whole memory, in batches).
    allocated: usize,
}

impl WorkerHistograms {
    #[inline]
    pub fn record(&mut self, id: HistogramId, micros: u64) {
        let h = match id {
            HistogramId::UpstreamRqTime(i) => self.current.upstream.get_mut(i),
            HistogramId::DownstreamRqTime(i) => self.current.downstream.get_mut(i),
            // A worker records only its own loop; the index is the admin side's.
            HistogramId::LoopDuration(_) => Some(&mut self.current.loop_duration),
            HistogramId::PollDelay(_) => Some(&mut self.current.poll_delay),
        };
        if let Some(h) = h {
            h.saturating_record(micros.max(1));
            self.dirty = true;
        }
    }

    /// Offers what was recorded since the last hand-off to the admin side. When the admin has not
    /// taken the previous batch yet, keeps recording into the current one instead (no queue
    /// grows, no sample is lost).
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        let fresh = match self.spare.take().or_else(|| self.ret.try_recv().ok()) {
            Some(b) => b,
            None => {
                self.allocated += 1;
                Batch::new(self.current.upstream.len(), self.current.downstream.len())
            }
        };
        let full = std::mem::replace(&mut self.current, fresh);
        match self.tx.try_send(full) {
            Ok(()) => self.dirty = false,
            Err(TrySendError::Full(full)) | Err(TrySendError::Disconnected(full)) => {
                // The slot is taken: put the batch back and keep the fresh one for next time.
                self.spare = Some(std::mem::replace(&mut self.current, full));
            }
        }
    }

    /// Batches this worker has allocated since start (at most 3 however long nobody reads).
    pub fn allocated_batches(&self) -> usize {
        self.allocated
    }
}

/// The admin side of one worker's hand-off.
struct Link {
    rx: Receiver<Batch>,
    ret: SyncSender<Batch>,
}

struct Merged {
    links: Vec<Link>,
    upstream: Vec<Histogram<u64>>,
    downstream: Vec<Histogram<u64>>,
    /// Per worker (in `links` order: the order `worker` was called, which is worker index).
    loop_duration: Vec<Histogram<u64>>,
    poll_delay: Vec<Histogram<u64>>,
    /// Whether the loop histograms are shown (`enable_dispatcher_stats`).
    dispatcher_stats: bool,
}

/// The admin side: takes worker batches and keeps the cumulative histograms.
pub struct HistogramSink {
    merged: Mutex<Merged>,
}

/// Quantiles Envoy prints in `/stats` for a histogram.
pub const QUANTILES: [f64; 9] = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

impl HistogramSink {
    pub fn new(cfg: &crate::config::Bootstrap) -> Self {
        HistogramSink {
            merged: Mutex::new(Merged {
                links: Vec::new(),
                upstream: cfg.clusters.iter().map(|_| new_histogram()).collect(),
                downstream: cfg.listeners.iter().map(|_| new_histogram()).collect(),
                loop_duration: Vec::new(),
                poll_delay: Vec::new(),
                dispatcher_stats: cfg.dispatcher_stats,
            }),
        }
    }

    /// A worker's histograms; called once per worker at start, in worker index order (not on
    /// the request path).
    pub fn worker(&self, clusters: usize, listeners: usize) -> WorkerHistograms {
        // One slot towards the admin: the bound that keeps memory flat with nobody reading /stats.
        // A worker has at most three batches alive (recording, spare or returning, in the slot),
        // so two places on the way back mean the admin never has to free one and the worker
        // never allocates a fourth.
        let (tx, rx) = sync_channel(1);
        let (ret_tx, ret_rx) = sync_channel(2);
        let mut m = match self.merged.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        m.links.push(Link { rx, ret: ret_tx });
        m.loop_duration.push(new_loop_histogram());
        m.poll_delay.push(new_loop_histogram());
        WorkerHistograms {
            current: Batch::new(clusters, listeners),
            spare: None,
            dirty: false,
            tx,
            ret: ret_rx,
            allocated: 1,
        }
    }

    /// Merges pending batches and calls `f` with (id, cumulative histogram) for every histogram.
    pub fn with_merged(&self, mut f: impl FnMut(HistogramId, &Histogram<u64>)) {
        let mut m = match self.merged.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let m = &mut *m;
        for (w, link) in m.links.iter().enumerate() {
            match link.rx.try_recv() {
                Ok(mut batch) => {
                    for (t, h) in m.upstream.iter_mut().zip(&batch.upstream) {
                        let _ = t.add(h);
                    }
                    for (t, h) in m.downstream.iter_mut().zip(&batch.downstream) {
                        let _ = t.add(h);
                    }
                    if let Some(t) = m.loop_duration.get_mut(w) {
                        let _ = t.add(&batch.loop_duration);
                    }
                    if let Some(t) = m.poll_delay.get_mut(w) {
                        let _ = t.add(&batch.poll_delay);
                    }
                    batch.reset();
                    // The worker may already hold a spare (or be gone): then this one is freed.
                    let _ = link.ret.try_send(batch);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => {}
            }
        }
        for (i, h) in m.upstream.iter().enumerate() {
            f(HistogramId::UpstreamRqTime(i), h);
        }
        for (i, h) in m.downstream.iter().enumerate() {
            f(HistogramId::DownstreamRqTime(i), h);
        }
        if m.dispatcher_stats {
            for (i, h) in m.loop_duration.iter().enumerate() {
                f(HistogramId::LoopDuration(i), h);
            }
            for (i, h) in m.poll_delay.iter().enumerate() {
                f(HistogramId::PollDelay(i), h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn totals(sink: &HistogramSink) -> (u64, u64) {
        let (mut up, mut down) = (0, 0);
        sink.with_merged(|id, h| match id {
            HistogramId::UpstreamRqTime(_) => up += h.len(),
            HistogramId::DownstreamRqTime(_) => down += h.len(),
            HistogramId::LoopDuration(_) | HistogramId::PollDelay(_) => {}
        });
        (up, down)
    }

    #[test]
    fn many_flushes_without_a_reader_hold_bounded_memory_and_lose_nothing() {
        let sink = HistogramSink::new(&crate::admin::test_support::bootstrap());
        let mut w = sink.worker(1, 1);
        // An hour of once-a-second flushes with nobody reading /stats.
        for i in 0..3600u64 {
            w.record(HistogramId::UpstreamRqTime(0), 100 + i);
            w.record(HistogramId::DownstreamRqTime(0), 200 + i);
            w.flush();
        }
        // The one being recorded into, one in the slot, one spare: the hand-off did not grow.
        assert_eq!(w.allocated_batches(), 3);
        // The first batch (one sample each) reached the admin; the rest stayed with the worker.
        assert_eq!(totals(&sink), (1, 1));
        w.flush();
        assert_eq!(totals(&sink), (3600, 3600));
        // Reading regularly recycles batches: still no new allocation.
        for _ in 0..100 {
            w.record(HistogramId::UpstreamRqTime(0), 5);
            w.flush();
            let _ = totals(&sink);
        }
        assert_eq!(w.allocated_batches(), 3);
        assert_eq!(totals(&sink).0, 3700);
    }

    #[test]
    fn flush_without_records_sends_nothing() {
        let sink = HistogramSink::new(&crate::admin::test_support::bootstrap());
        let mut w = sink.worker(1, 1);
        w.flush();
        w.flush();
        assert_eq!(w.allocated_batches(), 1);
        assert_eq!(totals(&sink), (0, 0));
    }
}
