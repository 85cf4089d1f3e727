//! Ringway's validated configuration: the only configuration shape runtime code ever sees.
//!
//! `config::load` walks Envoy's v3 YAML (see `envoy.rs`) and builds these types; anything that
//! could be wrong (unknown clusters, bad durations, impossible limits) has already been rejected
//! with a field path by then, so nothing here needs re-checking on the request path. The types are
//! immutable once built and shared between workers behind an `Arc`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Index of a cluster in [`Bootstrap::clusters`]; routes refer to clusters by this, not by name,
/// so the request path never hashes a cluster name.
pub type ClusterId = usize;

#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin: Option<Admin>,
    pub listeners: Vec<Listener>,
    pub clusters: Vec<Cluster>,
    /// `overload.global_downstream_max_connections` from `layered_runtime`: open downstream
    /// connections over every listener together (the `--max-connections` flag overrides it).
    pub global_downstream_max_connections: Option<u64>,
    /// `enable_dispatcher_stats`: record each worker's loop duration and poll delay histograms
    /// (off by default, as in Envoy).
    pub dispatcher_stats: bool,
}

impl Bootstrap {
    pub fn cluster_by_name(&self, name: &str) -> Option<ClusterId> {
        self.clusters.iter().position(|c| c.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub address: SocketAddr,
    /// `admin.access_log[]` file paths (Envoy's admin access log); requests to admin are logged there.
    pub access_log_paths: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// `tcp_backlog_size`; Envoy's default is 128 but the kernel clamps to somaxconn anyway.
    pub backlog: u32,
    /// `per_connection_buffer_limit_bytes` (Envoy default 1 MiB): bounds what one connection buffers.
    pub per_connection_buffer_limit_bytes: u32,
    /// `envoy.resource_limits.listener.<name>.connection_limit` from `layered_runtime`: open
    /// connections on this listener.
    pub connection_limit: Option<u64>,
    pub hcm: HttpConnectionManager,
    /// TLS termination from the filter chains' `transport_socket`s; `None` for a plain listener.
    /// Several filter chains are allowed only when they differ in `filter_chain_match.server_names`
    /// and TLS context alone (their connection managers must be identical).
    pub tls: Option<DownstreamTls>,
}

/// `envoy.transport_sockets.tls` on a listener: one entry per filter chain, chosen by SNI.
#[derive(Debug, Clone)]
pub struct DownstreamTls {
    pub chains: Vec<TlsFilterChain>,
    /// `transport_socket_connect_timeout` of the filter chains (the longest wins): the whole
    /// handshake must finish within it. Ringway's default is 10 s (Envoy has none, which lets
    /// idle half-handshakes pile up).
    pub handshake_timeout: Duration,
}

/// One filter chain's TLS: which server names select it and what it presents.
#[derive(Debug, Clone)]
pub struct TlsFilterChain {
    /// `filter_chain_match.server_names`, lowercased: exact names or `*.suffix` wildcards. Empty
    /// means "any name", the chain used when no other matches (or when the client sends no SNI).
    pub server_names: Vec<String>,
    pub context: DownstreamTlsContext,
}

/// `DownstreamTlsContext`.
#[derive(Debug, Clone)]
pub struct DownstreamTlsContext {
    /// `common_tls_context.tls_certificates` (at least one).
    pub certificates: Vec<TlsCertificate>,
    /// `common_tls_context.alpn_protocols`; when unset Ringway offers what the codec speaks
    /// (`h2,http/1.1` for AUTO, `h2` for HTTP2, `http/1.1` for HTTP1).
    pub alpn_protocols: Vec<String>,
    /// `common_tls_context.tls_params`.
    pub versions: TlsVersions,
    /// `disable_stateless_session_resumption` (Envoy default false): no session tickets when true.
    pub disable_stateless_session_resumption: bool,
    /// `disable_stateful_session_resumption` (Envoy default false): no session-id cache when true.
    pub disable_stateful_session_resumption: bool,
}

/// A certificate chain and its key, each from a file (re-read when it changes) or inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    pub certificate_chain: DataSource,
    pub private_key: DataSource,
}

/// Envoy's `config.core.v3.DataSource`: `filename` or `inline_string` (`inline_bytes` as base64
/// is decoded to the same thing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    File(PathBuf),
    Inline(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `tls_params.tls_minimum_protocol_version` / `tls_maximum_protocol_version`. rustls speaks only
/// TLS 1.2 and 1.3, so `TLSv1_0`/`TLSv1_1` as a minimum is refused with the field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVersions {
    pub min: TlsVersion,
    pub max: TlsVersion,
}

impl Default for TlsVersions {
    /// Envoy's defaults for both directions: TLS 1.2 to TLS 1.3.
    fn default() -> Self {
        TlsVersions {
            min: TlsVersion::Tls12,
            max: TlsVersion::Tls13,
        }
    }
}

/// `UpstreamTlsContext` on a cluster's `transport_socket`.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `sni`; when unset the endpoint's host name is sent if it is a name (not for IP literals).
    pub sni: Option<String>,
    /// `common_tls_context.validation_context.trusted_ca`; when unset the system's trust store
    /// (`/etc/ssl/certs/ca-certificates.crt`) is used. Verification is always on unless
    /// `validation_context.trust_chain_verification: ACCEPT_UNTRUSTED` turns it off.
    pub trusted_ca: Option<DataSource>,
    /// False only with `trust_chain_verification: ACCEPT_UNTRUSTED`.
    pub verify: bool,
    /// `common_tls_context.alpn_protocols`; when unset: `h2` for HTTP/2 clusters, `http/1.1` else.
    pub alpn_protocols: Vec<String>,
    pub versions: TlsVersions,
    /// `common_tls_context.tls_certificates[0]`: a client certificate for mutual TLS.
    pub client_certificate: Option<TlsCertificate>,
}

/// `http2_protocol_options` (downstream on the HCM, upstream on the cluster), with the edge-safe
/// defaults Envoy's edge best-practice guide recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Options {
    /// `max_concurrent_streams` (edge default 100).
    pub max_concurrent_streams: u32,
    /// `initial_stream_window_size` (edge default 64 KiB).
    pub initial_stream_window_size: u32,
    /// `initial_connection_window_size` (edge default 1 MiB).
    pub initial_connection_window_size: u32,
}

impl Default for Http2Options {
    fn default() -> Self {
        Http2Options {
            max_concurrent_streams: 100,
            initial_stream_window_size: 64 * 1024,
            initial_connection_window_size: 1024 * 1024,
        }
    }
}

/// What a cluster speaks to its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    /// `typed_extension_protocol_options` (`explicit_http_config.http2_protocol_options`) or the
    /// cluster's older `http2_protocol_options`.
    Http2(Http2Options),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecType {
    Auto,
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct HttpConnectionManager {
    pub stat_prefix: String,
    pub codec_type: CodecType,
    pub route_config: RouteConfig,
    pub access_logs: Vec<AccessLog>,
    /// `request_headers_timeout`; the edge default is 30 s (Envoy's edge best-practice value).
    pub request_headers_timeout: Duration,
    /// `stream_idle_timeout` (Envoy default 5 min); `Duration::ZERO` disables it.
    pub stream_idle_timeout: Duration,
    /// `common_http_protocol_options.idle_timeout` for downstream connections (Envoy default 1 h).
    pub idle_timeout: Duration,
    /// `request_timeout`: how long the whole request may take to arrive (Envoy default: none,
    /// `Duration::ZERO`).
    pub request_timeout: Duration,
    /// `drain_timeout`: the grace between an HTTP/2 connection's shutdown notice and its final
    /// GOAWAY (Envoy default 5 s; zero: the final GOAWAY follows one PING round trip).
    pub drain_timeout: Duration,
    /// `common_http_protocol_options.max_stream_duration`: how long a request/response may
    /// last in all (Envoy default: none, `Duration::ZERO`).
    pub max_stream_duration: Duration,
    /// `max_request_headers_kb` (Envoy default 60).
    pub max_request_headers_kb: u32,
    /// `common_http_protocol_options.max_headers_count` (Envoy default 100).
    pub max_headers_count: u32,
    /// `use_remote_address`: append the peer address to x-forwarded-for (true at the edge).
    pub use_remote_address: bool,
    /// `generate_request_id` (Envoy default true): set x-request-id when absent.
    pub generate_request_id: bool,
    /// `server_name` (Envoy default "envoy"; ours "ringway").
    pub server_name: String,
    /// `upgrade_configs[].upgrade_type` accepted on this connection manager (e.g. "websocket").
    pub upgrade_types: Vec<String>,
    /// `http2_protocol_options` for downstream HTTP/2 connections.
    pub http2: Http2Options,
    /// `http_protocol_options.accept_http_10` (Envoy default false: HTTP/1.0 gets 426).
    pub accept_http_10: bool,
    /// `http_protocol_options.default_host_for_http_10`: the Host for an HTTP/1.0 request that
    /// has none (`None` when unset or empty). Only meaningful with `accept_http_10`.
    pub default_host_for_http_10: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AccessLog {
    pub path: PathBuf,
    /// Envoy format string; `None` means Envoy's default format.
    pub format: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub virtual_hosts: Vec<VirtualHost>,
    pub headers: HeaderMutations,
}

/// `request_headers_to_add/remove` and `response_headers_to_add/remove` at one level
/// (route configuration, virtual host or route). Names are lowercase.
#[derive(Debug, Clone, Default)]
pub struct HeaderMutations {
    pub request_add: Vec<HeaderValueOption>,
    pub request_remove: Vec<String>,
    pub response_add: Vec<HeaderValueOption>,
    pub response_remove: Vec<String>,
}

impl HeaderMutations {
    pub fn is_empty(&self) -> bool {
        self.request_add.is_empty()
            && self.request_remove.is_empty()
            && self.response_add.is_empty()
            && self.response_remove.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendAction {
    /// `APPEND_IF_EXISTS_OR_ADD` (Envoy's default, and `append: true`).
    AppendIfExistsOrAdd,
    /// `ADD_IF_ABSENT`.
    AddIfAbsent,
    /// `OVERWRITE_IF_EXISTS_OR_ADD` (and `append: false`).
    OverwriteIfExistsOrAdd,
}

#[derive(Debug, Clone)]
pub struct HeaderValueOption {
    /// Lowercase header name.
    pub name: String,
    pub value: String,
    pub action: AppendAction,
}

#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    /// Domain patterns as written (lowercased): exact, `*.suffix`, `prefix.*`, `*`, each with an
    /// optional `:port`. The router compiles them.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    pub headers: HeaderMutations,
    /// Virtual-host level retry policy, used by routes without one.
    pub retry_policy: Option<RetryPolicy>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub action: RouteAction,
    pub headers: HeaderMutations,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    /// `prefix`: the path starts with this ("/" matches everything).
    Prefix(String),
    /// `path`: the path (without query) equals this.
    Path(String),
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    /// `case_sensitive` (Envoy default true).
    pub case_sensitive: bool,
    pub headers: Vec<HeaderMatcher>,
}

#[derive(Debug, Clone)]
pub enum HeaderMatchKind {
    /// `exact_match` or `string_match.exact`.
    Exact(String),
    /// `prefix_match` or `string_match.prefix`.
    Prefix(String),
    /// `present_match: true|false`.
    Present(bool),
}

#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lowercase header name (`:authority`, `:method` and `:path` address the pseudo-headers).
    pub name: String,
    pub kind: HeaderMatchKind,
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward(ForwardAction),
    Direct(DirectResponse),
}

#[derive(Debug, Clone)]
pub struct DirectResponse {
    pub status: u16,
    pub body: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ForwardAction {
    pub cluster: ClusterId,
    pub cluster_name: String,
    /// `timeout` (Envoy default 15 s); `None` when configured as 0 (disabled).
    pub timeout: Option<Duration>,
    /// `idle_timeout`: replaces the connection manager's `stream_idle_timeout` for this route
    /// (zero: no idle limit on it). `None`: not set.
    pub idle_timeout: Option<Duration>,
    /// `max_stream_duration.max_stream_duration`: replaces the connection manager's
    /// `max_stream_duration` for this route (zero: none). `None`: not set.
    pub max_stream_duration: Option<Duration>,
    pub prefix_rewrite: Option<String>,
    pub host_rewrite_literal: Option<String>,
    pub retry_policy: Option<RetryPolicy>,
    /// `upgrade_configs` on the route: `(upgrade_type, enabled)` overriding the HCM's list.
    pub upgrade_overrides: Vec<(String, bool)>,
}

/// Conditions in `retry_on`, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(pub u8);

impl RetryOn {
    pub const FIVE_XX: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1 << 2);
    pub const RESET: RetryOn = RetryOn(1 << 3);
    pub const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    pub const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub retry_on: RetryOn,
    /// `num_retries` (Envoy default 1).
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryType {
    Static,
    StrictDns,
    LogicalDns,
    /// `EDS` with a file source: members come from a `DiscoveryResponse` file, re-read on change.
    Eds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsLookupFamily {
    Auto,
    V4Only,
    V6Only,
    V4Preferred,
    All,
}

/// An endpoint as configured: a literal address, or a host name to resolve (STRICT_DNS/LOGICAL_DNS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    pub host: String,
    pub port: u16,
    /// Set when `host` is an IP literal.
    pub addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
}

impl Default for CircuitBreakers {
    /// Envoy's defaults for the DEFAULT priority.
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub discovery: DiscoveryType,
    /// `connect_timeout` (Envoy default 5 s).
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    pub endpoints: Vec<EndpointSpec>,
    /// `dns_refresh_rate` (Envoy default 5 s).
    pub dns_refresh_rate: Duration,
    pub dns_lookup_family: DnsLookupFamily,
    /// `common_http_protocol_options.idle_timeout` for pooled upstream connections (Envoy default 1 h).
    pub idle_timeout: Duration,
    /// `common_http_protocol_options.max_requests_per_connection` (unlimited when `None`).
    pub max_requests_per_connection: Option<u32>,
    pub circuit_breakers: CircuitBreakers,
    /// `per_connection_buffer_limit_bytes` (Envoy default 1 MiB).
    pub per_connection_buffer_limit_bytes: u32,
    /// EDS clusters: `eds_cluster_config.eds_config.path_config_source.path` (or the older
    /// `eds_config.path`), the `DiscoveryResponse` file the control thread watches. `None` otherwise.
    pub eds_path: Option<PathBuf>,
    /// EDS clusters: `eds_cluster_config.service_name`, the `cluster_name` looked up in the file
    /// (the cluster's own name when unset). `None` otherwise.
    pub eds_service_name: Option<String>,
    /// `health_checks[0]` (one HTTP checker per cluster).
    pub health_checks: Option<HealthCheck>,
    /// `outlier_detection` (consecutive-5xx ejection).
    pub outlier: Option<OutlierDetection>,
    /// HTTP/1.1 unless the cluster's protocol options ask for HTTP/2.
    pub protocol: UpstreamProtocol,
    /// `transport_socket` `envoy.transport_sockets.tls`: TLS to the endpoints.
    pub tls: Option<UpstreamTls>,
}

/// An active HTTP health check (`health_checks[0]` with `http_health_check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `timeout`: the whole check (connect, send, response status line) must finish within it.
    pub timeout: Duration,
    /// `interval` between two checks of one endpoint.
    pub interval: Duration,
    /// `interval_jitter`: up to this much is added at random to each interval.
    pub interval_jitter: Duration,
    /// `unhealthy_threshold`: consecutive failures that mark a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// `healthy_threshold`: consecutive successes that mark an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// `http_health_check.path`.
    pub path: String,
    /// `http_health_check.host`; `None` sends the cluster name, as Envoy does.
    pub host: Option<String>,
    /// `http_health_check.expected_statuses` as half-open `[start, end)` ranges (default `[200, 201)`).
    pub expected_statuses: Vec<(u16, u16)>,
}

impl HealthCheck {
    pub fn expects(&self, status: u16) -> bool {
        self.expected_statuses
            .iter()
            .any(|&(start, end)| (start..end).contains(&status))
    }
}

/// `outlier_detection`: consecutive-5xx ejection (Envoy's defaults in the field docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// `consecutive_5xx` (default 5): failures in a row that trigger an ejection.
    pub consecutive_5xx: u32,
    /// `consecutive_gateway_failure` (default 5): accepted; with Envoy's default
    /// `enforcing_consecutive_gateway_failure: 0` it never ejects, and Ringway supports only that.
    pub consecutive_gateway_failure: u32,
    /// `interval` (default 10 s): how often ejection state is swept and the gauges refreshed.
    pub interval: Duration,
    /// `base_ejection_time` (default 30 s): an ejection lasts this times the endpoint's ejection count.
    pub base_ejection_time: Duration,
    /// `max_ejection_time` (default 300 s): cap on one ejection's length.
    pub max_ejection_time: Duration,
    /// `max_ejection_percent` (default 10).
    pub max_ejection_percent: u32,
    /// `enforcing_consecutive_5xx` (default 100): percent chance a detection is enforced.
    pub enforcing_consecutive_5xx: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_gateway_failure: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            enforcing_consecutive_5xx: 100,
        }
    }
}
