//! Envoy-named statistics, written per worker without locks and summed on read.
//!
//! The stat objects here mirror Envoy's scopes: `server.*`, `listener.<addr>.*`,
//! `http.<stat_prefix>.*`, `cluster.<name>.*`, and per-endpoint counters for `/clusters`. Each is
//! built from [`counters::PerWorker`], so a worker writes only its own cache line. Latency
//! histograms are worker-local HdrHistograms (see `histograms.rs`) flushed to the admin thread
//! off the request path. The admin module renders all of this as Envoy's text, Prometheus and JSON
//! formats.

pub mod counters;
pub mod histograms;

use std::sync::Arc;
use std::time::Instant;

use counters::{CodeCounters, PerWorker};

/// Named counter indices for one cluster (`cluster.<name>.<stat>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ClusterStat {
    UpstreamRqTotal,
    UpstreamRqActive,
    UpstreamRqPendingTotal,
    UpstreamRqPendingActive,
    UpstreamRqPendingOverflow,
    UpstreamRqRetry,
    UpstreamRqRetrySuccess,
    UpstreamRqRetryOverflow,
    UpstreamRqTimeout,
    UpstreamRqPerTryTimeout,
    UpstreamRqRxReset,
    UpstreamRqTxReset,
    UpstreamCxTotal,
    UpstreamCxActive,
    UpstreamCxConnectFail,
    UpstreamCxConnectTimeout,
    UpstreamCxOverflow,
    UpstreamCxDestroyLocal,
    UpstreamCxDestroyRemote,
    UpstreamCxIdleTimeout,
    UpstreamCxProtocolError,
    UpstreamCxRxBytesTotal,
    UpstreamCxTxBytesTotal,
    UpstreamCxHttp1Total,
    UpstreamCxHttp2Total,
    UpstreamCxPoolReuse,
    UpstreamRqReuseRetry,
    UpstreamCxNoneHealthy,
    MembershipTotal,
    MembershipHealthy,
    MembershipChange,
    UpdateSuccess,
    UpdateRejected,
    HealthCheckAttempt,
    HealthCheckSuccess,
    HealthCheckFailure,
    OutlierEjectionsEnforcedTotal,
    OutlierEjectionsEnforcedConsecutive5xx,
    OutlierEjectionsOverflow,
    OutlierEjectionsActive,
}

impl ClusterStat {
    pub const COUNT: usize = ClusterStat::OutlierEjectionsActive as usize + 1;
    pub const ALL: [ClusterStat; ClusterStat::COUNT] = [
        ClusterStat::UpstreamRqTotal,
        ClusterStat::UpstreamRqActive,
        ClusterStat::UpstreamRqPendingTotal,
        ClusterStat::UpstreamRqPendingActive,
        ClusterStat::UpstreamRqPendingOverflow,
        ClusterStat::UpstreamRqRetry,
        ClusterStat::UpstreamRqRetrySuccess,
        ClusterStat::UpstreamRqRetryOverflow,
        ClusterStat::UpstreamRqTimeout,
        ClusterStat::UpstreamRqPerTryTimeout,
        ClusterStat::UpstreamRqRxReset,
        ClusterStat::UpstreamRqTxReset,
        ClusterStat::UpstreamCxTotal,
        ClusterStat::UpstreamCxActive,
        ClusterStat::UpstreamCxConnectFail,
        ClusterStat::UpstreamCxConnectTimeout,
        ClusterStat::UpstreamCxOverflow,
        ClusterStat::UpstreamCxDestroyLocal,
        ClusterStat::UpstreamCxDestroyRemote,
        ClusterStat::UpstreamCxIdleTimeout,
        ClusterStat::UpstreamCxProtocolError,
        ClusterStat::UpstreamCxRxBytesTotal,
        ClusterStat::UpstreamCxTxBytesTotal,
        ClusterStat::UpstreamCxHttp1Total,
        ClusterStat::UpstreamCxHttp2Total,
        ClusterStat::UpstreamCxPoolReuse,
        ClusterStat::UpstreamRqReuseRetry,
        ClusterStat::UpstreamCxNoneHealthy,
        ClusterStat::MembershipTotal,
        ClusterStat::MembershipHealthy,
        ClusterStat::MembershipChange,
        ClusterStat::UpdateSuccess,
        ClusterStat::UpdateRejected,
        ClusterStat::HealthCheckAttempt,
        ClusterStat::HealthCheckSuccess,
        ClusterStat::HealthCheckFailure,
        ClusterStat::OutlierEjectionsEnforcedTotal,
        ClusterStat::OutlierEjectionsEnforcedConsecutive5xx,
        ClusterStat::OutlierEjectionsOverflow,
        ClusterStat::OutlierEjectionsActive,
    ];

    /// Envoy's stat name (the part after `cluster.<name>.`).
    pub fn name(self) -> &'static str {
        match self {
            ClusterStat::UpstreamRqTotal => "upstream_rq_total",
            ClusterStat::UpstreamRqActive => "upstream_rq_active",
            ClusterStat::UpstreamRqPendingTotal => "upstream_rq_pending_total",
            ClusterStat::UpstreamRqPendingActive => "upstream_rq_pending_active",
            ClusterStat::UpstreamRqPendingOverflow => "upstream_rq_pending_overflow",
            ClusterStat::UpstreamRqRetry => "upstream_rq_retry",
            ClusterStat::UpstreamRqRetrySuccess => "upstream_rq_retry_success",
            ClusterStat::UpstreamRqRetryOverflow => "upstream_rq_retry_overflow",
            ClusterStat::UpstreamRqTimeout => "upstream_rq_timeout",
            ClusterStat::UpstreamRqPerTryTimeout => "upstream_rq_per_try_timeout",
            ClusterStat::UpstreamRqRxReset => "upstream_rq_rx_reset",
            ClusterStat::UpstreamRqTxReset => "upstream_rq_tx_reset",
            ClusterStat::UpstreamCxTotal => "upstream_cx_total",
            ClusterStat::UpstreamCxActive => "upstream_cx_active",
            ClusterStat::UpstreamCxConnectFail => "upstream_cx_connect_fail",
            ClusterStat::UpstreamCxConnectTimeout => "upstream_cx_connect_timeout",
            ClusterStat::UpstreamCxOverflow => "upstream_cx_overflow",
            ClusterStat::UpstreamCxDestroyLocal => "upstream_cx_destroy_local",
            ClusterStat::UpstreamCxDestroyRemote => "upstream_cx_destroy_remote",
            ClusterStat::UpstreamCxIdleTimeout => "upstream_cx_idle_timeout",
            ClusterStat::UpstreamCxProtocolError => "upstream_cx_protocol_error",
            ClusterStat::UpstreamCxRxBytesTotal => "upstream_cx_rx_bytes_total",
            ClusterStat::UpstreamCxTxBytesTotal => "upstream_cx_tx_bytes_total",
            ClusterStat::UpstreamCxHttp1Total => "upstream_cx_http1_total",
            ClusterStat::UpstreamCxHttp2Total => "upstream_cx_http2_total",
            ClusterStat::UpstreamCxPoolReuse => "upstream_cx_pool_reuse",
            ClusterStat::UpstreamRqReuseRetry => "upstream_rq_reuse_retry",
            ClusterStat::UpstreamCxNoneHealthy => "upstream_cx_none_healthy",
            ClusterStat::MembershipTotal => "membership_total",
            ClusterStat::MembershipHealthy => "membership_healthy",
            ClusterStat::MembershipChange => "membership_change",
            ClusterStat::UpdateSuccess => "update_success",
            ClusterStat::UpdateRejected => "update_rejected",
            ClusterStat::HealthCheckAttempt => "health_check.attempt",
            ClusterStat::HealthCheckSuccess => "health_check.success",
            ClusterStat::HealthCheckFailure => "health_check.failure",
            ClusterStat::OutlierEjectionsEnforcedTotal => {
                "outlier_detection.ejections_enforced_total"
            }
            ClusterStat::OutlierEjectionsEnforcedConsecutive5xx => {
                "outlier_detection.ejections_enforced_consecutive_5xx"
            }
            ClusterStat::OutlierEjectionsOverflow => "outlier_detection.ejections_overflow",
            ClusterStat::OutlierEjectionsActive => "outlier_detection.ejections_active",
        }
    }

    /// Gauges are rendered as gauges in Prometheus and may go down.
    pub fn is_gauge(self) -> bool {
        matches!(
            self,
            ClusterStat::UpstreamRqActive
                | ClusterStat::UpstreamRqPendingActive
                | ClusterStat::UpstreamCxActive
                | ClusterStat::MembershipTotal
                | ClusterStat::MembershipHealthy
                | ClusterStat::OutlierEjectionsActive
        )
    }
}

/// `cluster.<name>.*`.
pub struct ClusterStats {
    pub name: String,
    pub counters: PerWorker<{ ClusterStat::COUNT }>,
    /// `upstream_rq_<code>`; the `upstream_rq_<N>xx` classes are derived on read.
    pub codes: CodeCounters,
}

impl ClusterStats {
    pub fn new(name: &str, workers: usize) -> Self {
        ClusterStats {
            name: name.to_owned(),
            counters: PerWorker::new(workers),
            codes: CodeCounters::new(workers),
        }
    }
    #[inline]
    pub fn inc(&self, worker: usize, s: ClusterStat) {
        self.counters.inc(worker, s as usize);
    }
    #[inline]
    pub fn add(&self, worker: usize, s: ClusterStat, n: u64) {
        self.counters.add(worker, s as usize, n);
    }
    #[inline]
    pub fn dec(&self, worker: usize, s: ClusterStat) {
        self.counters.dec(worker, s as usize);
    }
    pub fn get(&self, s: ClusterStat) -> u64 {
        if s.is_gauge() {
            self.counters.gauge(s as usize)
        } else {
            self.counters.sum(s as usize)
        }
    }
}

/// Per-endpoint counters shown by `/clusters` (Envoy's host stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum EndpointStat {
    CxTotal,
    CxActive,
    CxConnectFail,
    RqTotal,
    RqActive,
    RqSuccess,
    RqError,
    RqTimeout,
}

impl EndpointStat {
    pub const COUNT: usize = EndpointStat::RqTimeout as usize + 1;
    pub const ALL: [EndpointStat; EndpointStat::COUNT] = [
        EndpointStat::CxTotal,
        EndpointStat::CxActive,
        EndpointStat::CxConnectFail,
        EndpointStat::RqTotal,
        EndpointStat::RqActive,
        EndpointStat::RqSuccess,
        EndpointStat::RqError,
        EndpointStat::RqTimeout,
    ];
    pub fn name(self) -> &'static str {
        match self {
            EndpointStat::CxTotal => "cx_total",
            EndpointStat::CxActive => "cx_active",
            EndpointStat::CxConnectFail => "cx_connect_fail",
            EndpointStat::RqTotal => "rq_total",
            EndpointStat::RqActive => "rq_active",
            EndpointStat::RqSuccess => "rq_success",
            EndpointStat::RqError => "rq_error",
            EndpointStat::RqTimeout => "rq_timeout",
        }
    }
    pub fn is_gauge(self) -> bool {
        matches!(self, EndpointStat::CxActive | EndpointStat::RqActive)
    }
}

/// One endpoint's counters; shared (by `Arc`) between membership snapshots so an endpoint keeps
/// its history while the set around it changes.
pub struct EndpointStats {
    pub counters: PerWorker<{ EndpointStat::COUNT }>,
}

impl EndpointStats {
    pub fn new(workers: usize) -> Self {
        EndpointStats {
            counters: PerWorker::new(workers),
        }
    }
    #[inline]
    pub fn inc(&self, worker: usize, s: EndpointStat) {
        self.counters.inc(worker, s as usize);
    }
    #[inline]
    pub fn dec(&self, worker: usize, s: EndpointStat) {
        self.counters.dec(worker, s as usize);
    }
    pub fn get(&self, s: EndpointStat) -> u64 {
        if s.is_gauge() {
            self.counters.gauge(s as usize)
        } else {
            self.counters.sum(s as usize)
        }
    }
}

/// `http.<stat_prefix>.*` (one per HTTP connection manager).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum HttpStat {
    DownstreamRqTotal,
    DownstreamRqActive,
    DownstreamRqHttp1Total,
    DownstreamRqHttp2Total,
    DownstreamCxTotal,
    DownstreamCxActive,
    DownstreamCxHttp1Total,
    DownstreamCxHttp2Total,
    DownstreamCxSslTotal,
    DownstreamCxProtocolError,
    DownstreamCxDestroyRemote,
    DownstreamCxDrainClose,
    DownstreamCxRxBytesTotal,
    DownstreamCxTxBytesTotal,
    DownstreamRqRxReset,
    DownstreamRqTimeout,
    DownstreamRqHeaderTimeout,
    DownstreamRqTooLarge,
    NoRoute,
    NoCluster,
    RqDirectResponse,
    RqRedirect,
}

impl HttpStat {
    pub const COUNT: usize = HttpStat::RqRedirect as usize + 1;
    pub const ALL: [HttpStat; HttpStat::COUNT] = [
        HttpStat::DownstreamRqTotal,
        HttpStat::DownstreamRqActive,
        HttpStat::DownstreamRqHttp1Total,
        HttpStat::DownstreamRqHttp2Total,
        HttpStat::DownstreamCxTotal,
        HttpStat::DownstreamCxActive,
        HttpStat::DownstreamCxHttp1Total,
        HttpStat::DownstreamCxHttp2Total,
        HttpStat::DownstreamCxSslTotal,
        HttpStat::DownstreamCxProtocolError,
        HttpStat::DownstreamCxDestroyRemote,
        HttpStat::DownstreamCxDrainClose,
        HttpStat::DownstreamCxRxBytesTotal,
        HttpStat::DownstreamCxTxBytesTotal,
        HttpStat::DownstreamRqRxReset,
        HttpStat::DownstreamRqTimeout,
        HttpStat::DownstreamRqHeaderTimeout,
        HttpStat::DownstreamRqTooLarge,
        HttpStat::NoRoute,
        HttpStat::NoCluster,
        HttpStat::RqDirectResponse,
        HttpStat::RqRedirect,
    ];
    pub fn name(self) -> &'static str {
        match self {
            HttpStat::DownstreamRqTotal => "downstream_rq_total",
            HttpStat::DownstreamRqActive => "downstream_rq_active",
            HttpStat::DownstreamRqHttp1Total => "downstream_rq_http1_total",
            HttpStat::DownstreamRqHttp2Total => "downstream_rq_http2_total",
            HttpStat::DownstreamCxTotal => "downstream_cx_total",
            HttpStat::DownstreamCxActive => "downstream_cx_active",
            HttpStat::DownstreamCxHttp1Total => "downstream_cx_http1_total",
            HttpStat::DownstreamCxHttp2Total => "downstream_cx_http2_total",
            HttpStat::DownstreamCxSslTotal => "downstream_cx_ssl_total",
            HttpStat::DownstreamCxProtocolError => "downstream_cx_protocol_error",
            HttpStat::DownstreamCxDestroyRemote => "downstream_cx_destroy_remote",
            HttpStat::DownstreamCxDrainClose => "downstream_cx_drain_close",
            HttpStat::DownstreamCxRxBytesTotal => "downstream_cx_rx_bytes_total",
            HttpStat::DownstreamCxTxBytesTotal => "downstream_cx_tx_bytes_total",
            HttpStat::DownstreamRqRxReset => "downstream_rq_rx_reset",
            HttpStat::DownstreamRqTimeout => "downstream_rq_timeout",
            HttpStat::DownstreamRqHeaderTimeout => "downstream_rq_header_timeout",
            HttpStat::DownstreamRqTooLarge => "downstream_rq_too_large",
            HttpStat::NoRoute => "no_route",
            HttpStat::NoCluster => "no_cluster",
            HttpStat::RqDirectResponse => "rq_direct_response",
            HttpStat::RqRedirect => "rq_redirect",
        }
    }
    pub fn is_gauge(self) -> bool {
        matches!(
            self,
            HttpStat::DownstreamRqActive | HttpStat::DownstreamCxActive
        )
    }
}

/// `http.<stat_prefix>.*`.
pub struct HttpStats {
    pub stat_prefix: String,
    pub counters: PerWorker<{ HttpStat::COUNT }>,
    /// `downstream_rq_<code>`; classes derived on read.
    pub codes: CodeCounters,
}

impl HttpStats {
    pub fn new(stat_prefix: &str, workers: usize) -> Self {
        HttpStats {
            stat_prefix: stat_prefix.to_owned(),
            counters: PerWorker::new(workers),
            codes: CodeCounters::new(workers),
        }
    }
    #[inline]
    pub fn inc(&self, worker: usize, s: HttpStat) {
        self.counters.inc(worker, s as usize);
    }
    #[inline]
    pub fn add(&self, worker: usize, s: HttpStat, n: u64) {
        self.counters.add(worker, s as usize, n);
    }
    #[inline]
    pub fn dec(&self, worker: usize, s: HttpStat) {
        self.counters.dec(worker, s as usize);
    }
    pub fn get(&self, s: HttpStat) -> u64 {
        if s.is_gauge() {
            self.counters.gauge(s as usize)
        } else {
            self.counters.sum(s as usize)
        }
    }
}

/// `listener.<address>.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ListenerStat {
    DownstreamCxTotal,
    DownstreamCxActive,
    DownstreamCxOverflow,
    NoFilterChainMatch,
}

impl ListenerStat {
    pub const COUNT: usize = ListenerStat::NoFilterChainMatch as usize + 1;
    pub const ALL: [ListenerStat; ListenerStat::COUNT] = [
        ListenerStat::DownstreamCxTotal,
        ListenerStat::DownstreamCxActive,
        ListenerStat::DownstreamCxOverflow,
        ListenerStat::NoFilterChainMatch,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ListenerStat::DownstreamCxTotal => "downstream_cx_total",
            ListenerStat::DownstreamCxActive => "downstream_cx_active",
            ListenerStat::DownstreamCxOverflow => "downstream_cx_overflow",
            ListenerStat::NoFilterChainMatch => "no_filter_chain_match",
        }
    }
    pub fn is_gauge(self) -> bool {
        matches!(self, ListenerStat::DownstreamCxActive)
    }
}

/// `listener.<address>.*` where `<address>` is Envoy's `0.0.0.0_10000` form.
pub struct ListenerStats {
    pub stat_name: String,
    pub counters: PerWorker<{ ListenerStat::COUNT }>,
}

impl ListenerStats {
    pub fn new(addr: std::net::SocketAddr, workers: usize) -> Self {
        ListenerStats {
            stat_name: format!("{}_{}", addr.ip(), addr.port()),
            counters: PerWorker::new(workers),
        }
    }
    #[inline]
    pub fn inc(&self, worker: usize, s: ListenerStat) {
        self.counters.inc(worker, s as usize);
    }
    #[inline]
    pub fn dec(&self, worker: usize, s: ListenerStat) {
        self.counters.dec(worker, s as usize);
    }
    pub fn get(&self, s: ListenerStat) -> u64 {
        if s.is_gauge() {
            self.counters.gauge(s as usize)
        } else {
            self.counters.sum(s as usize)
        }
    }
}

/// Every stat object of a running server. Built once at start; per-endpoint stats live in the
/// membership snapshots (`upstream::membership`).
pub struct Stats {
    pub workers: usize,
    pub started: Instant,
    pub listeners: Vec<ListenerStats>,
    /// Indexed like `Bootstrap::listeners` (one connection manager per listener).
    pub http: Vec<HttpStats>,
    /// Indexed by `ClusterId`.
    pub clusters: Vec<ClusterStats>,
    pub histograms: histograms::HistogramSink,
}

impl Stats {
    pub fn new(cfg: &crate::config::Bootstrap, workers: usize) -> Arc<Stats> {
        Arc::new(Stats {
            workers,
            started: Instant::now(),
            listeners: cfg
                .listeners
                .iter()
                .map(|l| ListenerStats::new(l.address, workers))
                .collect(),
            http: cfg
                .listeners
                .iter()
                .map(|l| HttpStats::new(&l.hcm.stat_prefix, workers))
                .collect(),
            clusters: cfg
                .clusters
                .iter()
                .map(|c| ClusterStats::new(&c.name, workers))
                .collect(),
            histograms: histograms::HistogramSink::new(cfg),
        })
    }
}
