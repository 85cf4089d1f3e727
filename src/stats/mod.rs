//! Envoy-named statistics, written per worker without locks and summed on read.
//!
//! The stat objects here mirror Envoy's scopes: `server.*`, `listener.<addr>.*`,
//! `http.<stat_prefix>.*`, `cluster.<name>.*`, and per-endpoint counters for `/clusters`. Each is
//! built from [`counters::PerWorker`], so a worker writes only its own cache line. Latency
//! histograms are worker-local HdrHistograms (see `histograms.rs`) flushed to the admin thread
//! off the request path. The admin module renders all of this as Envoy's text, Prometheus and JSON
//! formats.

pub mod breakers;
pub mod counters;
pub mod dispatcher;
pub mod histograms;

use std::sync::Arc;
use std::time::Instant;

use counters::{CodeCounters, PerWorker};

/// Declares a scope's stat enum: Envoy's name for each stat, which ones are gauges, and `ALL` in
/// declaration order.
macro_rules! stat_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? } gauges { $($gauge:ident),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const COUNT: usize = [$($name::$variant),+].len();
            pub const ALL: [$name; $name::COUNT] = [$($name::$variant),+];

            /// Envoy's stat name (the part after the scope prefix).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Gauges may go down and render as Prometheus gauges.
            pub fn is_gauge(self) -> bool {
                const GAUGES: &[$name] = &[$($name::$gauge),*];
                GAUGES.contains(&self)
            }
        }
    };
}

/// The accessors every scope has over its `counters: PerWorker<N>` field, typed by its enum.
macro_rules! stat_scope_methods {
    ($scope:ty, $kind:ty) => {
        impl $scope {
            #[inline]
            pub fn inc(&self, worker: usize, s: $kind) {
                self.counters.inc(worker, s as usize);
            }
            #[inline]
            pub fn add(&self, worker: usize, s: $kind, n: u64) {
                self.counters.add(worker, s as usize, n);
            }
            #[inline]
            pub fn dec(&self, worker: usize, s: $kind) {
                self.counters.dec(worker, s as usize);
            }
            /// The value summed over workers (gauges clamped at zero).
            pub fn get(&self, s: $kind) -> u64 {
                if s.is_gauge() {
                    self.counters.gauge(s as usize)
                } else {
                    self.counters.sum(s as usize)
                }
            }
        }
    };
}

stat_enum! {
    /// Named counter indices for one cluster (`cluster.<name>.<stat>`).
    ClusterStat {
        UpstreamRqTotal = "upstream_rq_total",
        UpstreamRqActive = "upstream_rq_active",
        UpstreamRqPendingTotal = "upstream_rq_pending_total",
        UpstreamRqPendingActive = "upstream_rq_pending_active",
        UpstreamRqPendingOverflow = "upstream_rq_pending_overflow",
        UpstreamRqRetry = "upstream_rq_retry",
        UpstreamRqRetrySuccess = "upstream_rq_retry_success",
        UpstreamRqRetryOverflow = "upstream_rq_retry_overflow",
        UpstreamRqTimeout = "upstream_rq_timeout",
        UpstreamRqPerTryTimeout = "upstream_rq_per_try_timeout",
        UpstreamRqRxReset = "upstream_rq_rx_reset",
        UpstreamRqTxReset = "upstream_rq_tx_reset",
        UpstreamCxTotal = "upstream_cx_total",
        UpstreamCxActive = "upstream_cx_active",
        UpstreamCxConnectFail = "upstream_cx_connect_fail",
        UpstreamCxConnectTimeout = "upstream_cx_connect_timeout",
        UpstreamCxOverflow = "upstream_cx_overflow",
        UpstreamCxDestroyLocal = "upstream_cx_destroy_local",
        UpstreamCxDestroyRemote = "upstream_cx_destroy_remote",
        UpstreamCxIdleTimeout = "upstream_cx_idle_timeout",
        UpstreamCxProtocolError = "upstream_cx_protocol_error",
        UpstreamCxRxBytesTotal = "upstream_cx_rx_bytes_total",
        UpstreamCxTxBytesTotal = "upstream_cx_tx_bytes_total",
        UpstreamCxHttp1Total = "upstream_cx_http1_total",
        UpstreamCxHttp2Total = "upstream_cx_http2_total",
        UpstreamCxPoolReuse = "upstream_cx_pool_reuse",
        UpstreamRqReuseRetry = "upstream_rq_reuse_retry",
        UpstreamCxNoneHealthy = "upstream_cx_none_healthy",
        UpstreamCxIdle = "upstream_cx_idle",
        MembershipTotal = "membership_total",
        MembershipHealthy = "membership_healthy",
        MembershipChange = "membership_change",
        UpdateSuccess = "update_success",
        UpdateRejected = "update_rejected",
        HealthCheckAttempt = "health_check.attempt",
        HealthCheckSuccess = "health_check.success",
        HealthCheckFailure = "health_check.failure",
        OutlierEjectionsEnforcedTotal = "outlier_detection.ejections_enforced_total",
        OutlierEjectionsEnforcedConsecutive5xx = "outlier_detection.ejections_enforced_consecutive_5xx",
        OutlierEjectionsOverflow = "outlier_detection.ejections_overflow",
        OutlierEjectionsActive = "outlier_detection.ejections_active",
        SslHandshake = "ssl.handshake",
        SslConnectionError = "ssl.connection_error",
        SslFailVerifyError = "ssl.fail_verify_error",
        SslSessionReused = "ssl.session_reused",
    }
    gauges { UpstreamRqActive, UpstreamRqPendingActive, UpstreamCxActive, UpstreamCxIdle, MembershipTotal, MembershipHealthy, OutlierEjectionsActive }
}

/// `cluster.<name>.*`.
pub struct ClusterStats {
    pub name: String,
    /// The cluster originates TLS: its `ssl.*` stats exist (Envoy creates them with the TLS
    /// context, so plain clusters do not show them).
    pub tls: bool,
    pub counters: PerWorker<{ ClusterStat::COUNT }>,
    /// `upstream_rq_<code>`; the `upstream_rq_<N>xx` classes are derived on read.
    pub codes: CodeCounters,
    /// `circuit_breakers.default.*`: the counts admission gates on, held by guards.
    pub breakers: breakers::BreakerCounts,
}

impl ClusterStats {
    pub fn new(name: &str, workers: usize) -> Self {
        ClusterStats {
            name: name.to_owned(),
            tls: false,
            counters: PerWorker::new(workers),
            codes: CodeCounters::new(workers),
            breakers: breakers::BreakerCounts::new(workers, [u64::MAX; 4]),
        }
    }
}

stat_scope_methods!(ClusterStats, ClusterStat);

stat_enum! {
    /// Per-endpoint counters shown by `/clusters` (Envoy's host stats).
    EndpointStat {
        CxTotal = "cx_total",
        CxActive = "cx_active",
        CxConnectFail = "cx_connect_fail",
        RqTotal = "rq_total",
        RqActive = "rq_active",
        RqSuccess = "rq_success",
        RqError = "rq_error",
        RqTimeout = "rq_timeout",
    }
    gauges { CxActive, RqActive }
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
}

stat_scope_methods!(EndpointStats, EndpointStat);

stat_enum! {
    /// `http.<stat_prefix>.*` (one per HTTP connection manager).
    HttpStat {
        DownstreamRqTotal = "downstream_rq_total",
        DownstreamRqActive = "downstream_rq_active",
        DownstreamRqHttp1Total = "downstream_rq_http1_total",
        DownstreamRqHttp2Total = "downstream_rq_http2_total",
        DownstreamCxTotal = "downstream_cx_total",
        DownstreamCxActive = "downstream_cx_active",
        DownstreamCxHttp1Total = "downstream_cx_http1_total",
        DownstreamCxHttp2Total = "downstream_cx_http2_total",
        DownstreamCxSslTotal = "downstream_cx_ssl_total",
        DownstreamCxSslActive = "downstream_cx_ssl_active",
        DownstreamCxProtocolError = "downstream_cx_protocol_error",
        DownstreamCxDestroyRemote = "downstream_cx_destroy_remote",
        DownstreamCxDrainClose = "downstream_cx_drain_close",
        DownstreamCxRxBytesTotal = "downstream_cx_rx_bytes_total",
        DownstreamCxTxBytesTotal = "downstream_cx_tx_bytes_total",
        DownstreamRqRxReset = "downstream_rq_rx_reset",
        DownstreamRqTimeout = "downstream_rq_timeout",
        DownstreamRqHeaderTimeout = "downstream_rq_header_timeout",
        DownstreamRqIdleTimeout = "downstream_rq_idle_timeout",
        DownstreamRqMaxDurationReached = "downstream_rq_max_duration_reached",
        DownstreamRqTooManyPrematureResets = "downstream_rq_too_many_premature_resets",
        Http2OutboundControlFlood = "http2.outbound_control_flood",
        Http2InboundEmptyFramesFlood = "http2.inbound_empty_frames_flood",
        Http2InboundContinuationFlood = "http2.inbound_continuation_frames_flood",
        DownstreamRqTooLarge = "downstream_rq_too_large",
        NoRoute = "no_route",
        NoCluster = "no_cluster",
        RqDirectResponse = "rq_direct_response",
        RqRedirect = "rq_redirect",
    }
    gauges { DownstreamRqActive, DownstreamCxActive, DownstreamCxSslActive }
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
}

stat_scope_methods!(HttpStats, HttpStat);

stat_enum! {
    /// `listener.<address>.*`.
    ListenerStat {
        DownstreamCxTotal = "downstream_cx_total",
        DownstreamCxActive = "downstream_cx_active",
        DownstreamCxOverflow = "downstream_cx_overflow",
        DownstreamGlobalCxOverflow = "downstream_global_cx_overflow",
        NoFilterChainMatch = "no_filter_chain_match",
        DownstreamCxTransportSocketConnectTimeout = "downstream_cx_transport_socket_connect_timeout",
        SslHandshake = "ssl.handshake",
        SslConnectionError = "ssl.connection_error",
        SslNoCertificate = "ssl.no_certificate",
        SslSessionReused = "ssl.session_reused",
        SslVersionTls12 = "ssl.versions.TLSv1.2",
        SslVersionTls13 = "ssl.versions.TLSv1.3",
    }
    gauges { DownstreamCxActive }
}

impl ListenerStat {
    /// `ssl.*` stats exist only on TLS listeners.
    pub fn is_ssl(self) -> bool {
        self.name().starts_with("ssl.")
    }
}

impl ClusterStat {
    /// `ssl.*` stats exist only on TLS clusters.
    pub fn is_ssl(self) -> bool {
        self.name().starts_with("ssl.")
    }
}

/// `listener.<address>.*` where `<address>` is Envoy's `0.0.0.0_10000` form.
pub struct ListenerStats {
    pub stat_name: String,
    /// The listener terminates TLS: its `ssl.*` stats exist.
    pub tls: bool,
    pub counters: PerWorker<{ ListenerStat::COUNT }>,
}

impl ListenerStats {
    pub fn new(addr: std::net::SocketAddr, workers: usize) -> Self {
        ListenerStats {
            stat_name: format!("{}_{}", addr.ip(), addr.port()),
            tls: false,
            counters: PerWorker::new(workers),
        }
    }
}

stat_scope_methods!(ListenerStats, ListenerStat);

stat_enum! {
    /// Process-wide counters that belong to no listener, connection manager or cluster. They are
    /// rendered under their full name.
    ServerStat {
        // Access-log lines a worker discarded because the writer thread had not given back any
        // of the worker's buffers (the disk is slower than the traffic). Envoy's file logger
        // buffers without bound instead; Ringway bounds the memory and counts what it sheds.
        AccessLogDropped = "access_log.dropped",
    }
    gauges {}
}

/// The [`ServerStat`] counters.
pub struct ServerStats {
    pub counters: PerWorker<{ ServerStat::COUNT }>,
}

impl ServerStats {
    pub fn new(workers: usize) -> Self {
        ServerStats {
            counters: PerWorker::new(workers),
        }
    }
}

stat_scope_methods!(ServerStats, ServerStat);

/// Every stat object of a running server. Built once at start; per-endpoint stats live in the
/// membership snapshots (`upstream::membership`).
pub struct Stats {
    pub workers: usize,
    pub started: Instant,
    pub server: ServerStats,
    pub listeners: Vec<ListenerStats>,
    /// Indexed like `Bootstrap::listeners` (one connection manager per listener).
    pub http: Vec<HttpStats>,
    /// Indexed by `ClusterId`.
    pub clusters: Vec<ClusterStats>,
    pub histograms: histograms::HistogramSink,
    /// Worker loop heartbeats and watchdog counters.
    pub loops: Arc<dispatcher::LoopHealth>,
}

impl Stats {
    pub fn new(cfg: &crate::config::Bootstrap, workers: usize) -> Arc<Stats> {
        let started = Instant::now();
        Arc::new(Stats {
            workers,
            started,
            server: ServerStats::new(workers),
            listeners: cfg
                .listeners
                .iter()
                .map(|l| ListenerStats {
                    tls: l.tls.is_some(),
                    ..ListenerStats::new(l.address, workers)
                })
                .collect(),
            http: cfg
                .listeners
                .iter()
                .map(|l| HttpStats::new(&l.hcm.stat_prefix, workers))
                .collect(),
            clusters: cfg
                .clusters
                .iter()
                .map(|c| {
                    let cb = &c.circuit_breakers;
                    let limits = [
                        cb.max_connections,
                        cb.max_pending_requests,
                        cb.max_requests,
                        cb.max_retries,
                    ]
                    .map(u64::from);
                    ClusterStats {
                        tls: c.tls.is_some(),
                        breakers: breakers::BreakerCounts::new(workers, limits),
                        ..ClusterStats::new(&c.name, workers)
                    }
                })
                .collect(),
            histograms: histograms::HistogramSink::new(cfg),
            loops: Arc::new(dispatcher::LoopHealth::new(workers, started)),
        })
    }
}
