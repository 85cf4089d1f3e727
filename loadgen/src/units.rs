//! The latency unit every part of a run records in: microseconds, in an HdrHistogram bounded
//! at [`MAX_LATENCY_US`]. A leaf, so the recorder (`report.rs`) and the per-second series
//! (`timeline.rs`) both use it without importing each other.

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks; larger values are clamped to it (and show as max).
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// New latency histogram (µs, 1 µs .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, 3 digits): this cannot fail, and no
    // input reaches it.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}
