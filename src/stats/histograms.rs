//! Latency histograms: recorded worker-locally, merged by the admin thread on read.
//!
//! An HdrHistogram is not a concurrent structure, so each worker owns its own
//! ([`WorkerHistograms`]) and records into it without synchronisation. Every flush interval the
//! worker hands the accumulated deltas over a channel ([`HistogramSink`]) and starts afresh; the
//! admin thread merges whatever has arrived whenever it renders stats. The channel send happens
//! at most once a second per worker, off the per-request path.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// Which histogram a delta belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramId {
    /// `cluster.<name>.upstream_rq_time`, by cluster index.
    UpstreamRqTime(usize),
    /// `http.<stat_prefix>.downstream_rq_time`, by listener index.
    DownstreamRqTime(usize),
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 3 significant digits. Such a histogram is a few hundred KiB, which is why
    // workers hand theirs over only once a second. The bounds are constants, so creation cannot
    // fail.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| {
        Histogram::new(3).expect("HdrHistogram with 3 significant digits is always valid")
    })
}

/// A worker's own histograms, in microseconds.
pub struct WorkerHistograms {
    upstream: Vec<Histogram<u64>>,
    downstream: Vec<Histogram<u64>>,
    dirty: bool,
    tx: Sender<(HistogramId, Histogram<u64>)>,
}

impl WorkerHistograms {
    #[inline]
    pub fn record(&mut self, id: HistogramId, micros: u64) {
        let h = match id {
            HistogramId::UpstreamRqTime(i) => self.upstream.get_mut(i),
            HistogramId::DownstreamRqTime(i) => self.downstream.get_mut(i),
        };
        if let Some(h) = h {
            h.saturating_record(micros.max(1));
            self.dirty = true;
        }
    }

    /// Sends what was recorded since the last flush to the admin side.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        for (i, h) in self.upstream.iter_mut().enumerate() {
            if !h.is_empty() {
                let _ = self.tx.send((HistogramId::UpstreamRqTime(i), h.clone()));
                h.reset();
            }
        }
        for (i, h) in self.downstream.iter_mut().enumerate() {
            if !h.is_empty() {
                let _ = self.tx.send((HistogramId::DownstreamRqTime(i), h.clone()));
                h.reset();
            }
        }
    }
}

struct Merged {
    rx: Receiver<(HistogramId, Histogram<u64>)>,
    upstream: Vec<Histogram<u64>>,
    downstream: Vec<Histogram<u64>>,
}

/// The admin side: receives worker deltas and keeps the cumulative histograms.
pub struct HistogramSink {
    tx: Mutex<Sender<(HistogramId, Histogram<u64>)>>,
    merged: Mutex<Merged>,
}

/// Quantiles Envoy prints in `/stats` for a histogram.
pub const QUANTILES: [f64; 9] = [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

impl HistogramSink {
    pub fn new(cfg: &crate::config::Bootstrap) -> Self {
        let (tx, rx) = channel();
        HistogramSink {
            tx: Mutex::new(tx),
            merged: Mutex::new(Merged {
                rx,
                upstream: cfg.clusters.iter().map(|_| new_histogram()).collect(),
                downstream: cfg.listeners.iter().map(|_| new_histogram()).collect(),
            }),
        }
    }

    /// A worker's histograms; called once per worker at start (not on the request path).
    pub fn worker(&self, clusters: usize, listeners: usize) -> WorkerHistograms {
        let tx = match self.tx.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        WorkerHistograms {
            upstream: (0..clusters).map(|_| new_histogram()).collect(),
            downstream: (0..listeners).map(|_| new_histogram()).collect(),
            dirty: false,
            tx,
        }
    }

    /// Merges pending deltas and calls `f` with (id, cumulative histogram) for every histogram.
    pub fn with_merged(&self, mut f: impl FnMut(HistogramId, &Histogram<u64>)) {
        let mut m = match self.merged.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let m = &mut *m;
        while let Ok((id, h)) = m.rx.try_recv() {
            let target = match id {
                HistogramId::UpstreamRqTime(i) => m.upstream.get_mut(i),
                HistogramId::DownstreamRqTime(i) => m.downstream.get_mut(i),
            };
            if let Some(t) = target {
                let _ = t.add(&h);
            }
        }
        for (i, h) in m.upstream.iter().enumerate() {
            f(HistogramId::UpstreamRqTime(i), h);
        }
        for (i, h) in m.downstream.iter().enumerate() {
            f(HistogramId::DownstreamRqTime(i), h);
        }
    }
}
