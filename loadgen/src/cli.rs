//! Command line of `ringway-loadgen`, and its validation into a `Config` the workers can run
//! without re-checking anything (URL split into address and request target, durations parsed,
//! CPU list expanded, the request bytes encoded once).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::churn::{self, Membership};
use crate::control::Endpoint;
use crate::h1;
use crate::schedule::Arrivals;
pub use crate::url::{parse_url, Scheme, Target};

#[derive(Debug, Parser)]
#[command(
    name = "ringway-loadgen",
    version,
    about = "Open-loop HTTP load generator (HTTP/1.1, h2c, HTTPS and h2 over TLS): latency is \
             measured from each request's scheduled time, so server stalls show up in the tail \
             (no coordinated omission)",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Target URL: http:// (HTTP/1.1), https:// (HTTP/1.1 over TLS, ALPN http/1.1), h2c://
    /// (HTTP/2 with prior knowledge); --http2 turns http:// into h2c and https:// into h2 over
    /// TLS (ALPN h2).
    #[arg(required = true)]
    pub url: Option<String>,
    /// Offered load in requests per second over all connections (required unless --closed).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured run length (after warmup), e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warmup before measuring; requests due in it are sent but not recorded.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Keep-alive connections over all threads.
    #[arg(long, short = 'c', default_value_t = 64)]
    pub connections: usize,
    /// Worker threads (one monoio runtime each).
    #[arg(long, short = 't', default_value_t = 1)]
    pub threads: usize,
    /// CPUs to pin worker threads to, e.g. "0,2-3"; thread i gets the i-th CPU (wrapping).
    #[arg(long)]
    pub cpu_set: Option<String>,
    /// Request method.
    #[arg(long, short = 'm', default_value = "GET")]
    pub method: String,
    /// Extra request header 'name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long)]
    pub body: Option<String>,
    /// Closed loop: each connection sends as fast as responses come back (max throughput).
    #[arg(long, conflicts_with_all = ["rate", "poisson"])]
    pub closed: bool,
    /// Poisson arrivals instead of evenly spaced ones.
    #[arg(long)]
    pub poisson: bool,
    /// Per-request I/O timeout (connect, write, and read of the response).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Seed for Poisson arrivals.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the latency-over-time chart (SVG; HTML with the SVG embedded if FILE ends in .html).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
    /// HTTP/2: each connection is one h2 connection carrying up to --streams requests at once.
    #[arg(long)]
    pub http2: bool,
    /// HTTP/2: concurrent streams per connection (requests due while all are busy wait, and
    /// their latency counts from their scheduled time).
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// TLS: do not verify the server certificate (chain and name); handshake signatures are
    /// still checked.
    #[arg(long, conflicts_with = "cacert")]
    pub insecure: bool,
    /// TLS: trust the CA certificates in this PEM file instead of the system bundle.
    #[arg(long)]
    pub cacert: Option<std::path::PathBuf>,
    /// TLS: protocol version.
    #[arg(long, value_enum, default_value = "1.3")]
    pub tls_version: TlsVersion,
    /// TLS: full handshake on every connection (session resumption is on by default).
    #[arg(long)]
    pub no_resumption: bool,
    /// Print the live progress line even when stderr is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,
    /// No live progress line (it is on by default when stderr is a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// The proxy's admin base URL: scrape its worker loop lag (Envoy's
    /// `dispatcher.poll_delay_us`, which Ringway publishes with `enable_dispatcher_stats`)
    /// once per interval and draw it on the --report chart.
    #[arg(long, value_name = "ADMIN_URL")]
    pub loop_stats: Option<String>,
    #[command(flatten)]
    pub churn: ChurnArgs,
}

/// Subcommands besides the load run itself.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve fixed HTTP/1.1 200 responses on many ports, each stoppable via a control endpoint.
    Upstream(UpstreamArgs),
    /// Run the whole churn demo on this machine: fleet, Ringway, open-loop load, graceful churn.
    Demo(DemoArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpstreamArgs {
    /// Ports to serve, e.g. 9101-9106 or 9101,9103.
    #[arg(long, default_value = "9101-9106")]
    pub ports: String,
    /// Response body size.
    #[arg(long, default_value_t = 64)]
    pub response_bytes: usize,
    /// Delay before each response.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub delay: Duration,
    /// Control endpoint port: POST /stop/<port>, POST /start/<port>, GET /status.
    #[arg(long)]
    pub control_port: Option<u16>,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Measured run length.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Offered load (open loop).
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Graceful churn period.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub churn_every: Duration,
    /// Upstream endpoints in the fleet.
    #[arg(long, default_value_t = 6)]
    pub endpoints: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// Write the latency-over-time chart (SVG, or HTML for *.html).
    #[arg(long)]
    pub report: Option<std::path::PathBuf>,
}

/// `--tls-version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    V12,
    #[value(name = "1.3")]
    V13,
}

/// How `--churn-mode` takes endpoints out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChurnMode {
    /// Remove from the proxy, drain, then stop the endpoint; start and add back later.
    Graceful,
    /// Stop the endpoint without telling the proxy; start it again later.
    Abrupt,
}

/// Churn options of the load run (all need --churn-every).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ChurnArgs {
    /// Churn period: every period one endpoint goes down (and, once half are down, the oldest
    /// comes back first).
    #[arg(long, value_parser = parse_duration)]
    pub churn_every: Option<Duration>,
    /// graceful: remove from the proxy, drain, stop; abrupt: stop without telling the proxy.
    #[arg(long, value_enum)]
    pub churn_mode: Option<ChurnMode>,
    /// Cluster whose membership the admin API changes.
    #[arg(long)]
    pub churn_cluster: Option<String>,
    /// Ringway admin base URL (POST /clusters/<cluster>/endpoints).
    #[arg(long)]
    pub admin: Option<String>,
    /// Endpoint ports to churn, e.g. 9101-9106.
    #[arg(long)]
    pub churn_ports: Option<String>,
    /// Host of the churned endpoints.
    #[arg(long, default_value = "127.0.0.1")]
    pub churn_host: String,
    /// Fleet control base URL (ringway-loadgen upstream --control-port).
    #[arg(long)]
    pub fleet_control: Option<String>,
    /// Script run with `sh -c` for membership changes instead of the admin API; env
    /// CHURN_EVENT=remove|add and CHURN_ENDPOINT=ip:port (nginx reload, HAProxy runtime API...).
    #[arg(long)]
    pub churn_cmd: Option<String>,
    /// Graceful mode: wait between removal from the proxy and stopping the endpoint.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub churn_drain: Duration,
    /// Churn phase length after each action, for the steady vs churn split.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub churn_window: Duration,
    /// Print every churn action as it happens (failures are always printed).
    #[arg(long)]
    pub churn_verbose: bool,
}

/// A validated churn description (the driver's `Plan` minus the live fleet handle).
#[derive(Debug, Clone)]
pub struct ChurnSpec {
    pub every: Duration,
    pub mode: churn::Mode,
    pub drain: Duration,
    pub window: Duration,
    pub endpoints: Vec<std::net::SocketAddr>,
    pub membership: Membership,
    pub fleet: Option<Endpoint>,
    pub verbose: bool,
}

impl ChurnSpec {
    /// The driver plan; `fleet` overrides the HTTP fleet control (the demo's in-process fleet).
    pub fn plan(&self, fleet: Option<Box<dyn churn::FleetControl>>) -> churn::Plan {
        churn::Plan {
            every: self.every,
            mode: self.mode,
            drain: self.drain,
            endpoints: self.endpoints.clone(),
            membership: self.membership.clone(),
            fleet: fleet.or_else(|| {
                self.fleet
                    .clone()
                    .map(|e| Box::new(churn::HttpFleet(e)) as Box<dyn churn::FleetControl>)
            }),
            verbose: self.verbose,
        }
    }
}

impl ChurnArgs {
    /// `None` without --churn-every (and then no other churn option may be given).
    pub fn into_spec(self) -> Result<Option<ChurnSpec>, String> {
        let Some(every) = self.churn_every else {
            let stray = self.churn_mode.is_some()
                || self.churn_cluster.is_some()
                || self.admin.is_some()
                || self.churn_ports.is_some()
                || self.fleet_control.is_some()
                || self.churn_cmd.is_some();
            return if stray {
                Err("churn options need --churn-every PERIOD".into())
            } else {
                Ok(None)
            };
        };
        let ports = self
            .churn_ports
            .as_deref()
            .ok_or("--churn-every needs --churn-ports (e.g. 9101-9106)")?;
        let ports = parse_ports(ports)?;
        let ip: std::net::IpAddr = self
            .churn_host
            .parse()
            .map_err(|_| format!("--churn-host {:?} must be an IP address", self.churn_host))?;
        let endpoints = ports
            .into_iter()
            .map(|p| std::net::SocketAddr::new(ip, p))
            .collect();
        let mode = match self.churn_mode.unwrap_or(ChurnMode::Graceful) {
            ChurnMode::Graceful => churn::Mode::Graceful,
            ChurnMode::Abrupt => churn::Mode::Abrupt,
        };
        let membership = match (self.churn_cmd, self.admin) {
            (Some(_), Some(_)) => return Err("--churn-cmd and --admin exclude each other".into()),
            (Some(cmd), None) => Membership::Cmd(cmd),
            (None, Some(admin)) => Membership::Admin {
                admin: Endpoint::parse(&admin).map_err(|e| format!("--admin: {e}"))?,
                cluster: self
                    .churn_cluster
                    .ok_or("--admin needs --churn-cluster NAME")?,
            },
            (None, None) => Membership::None,
        };
        let fleet = self
            .fleet_control
            .as_deref()
            .map(Endpoint::parse)
            .transpose()
            .map_err(|e| format!("--fleet-control: {e}"))?;
        let spec = ChurnSpec {
            every,
            mode,
            drain: self.churn_drain,
            window: self.churn_window,
            endpoints,
            membership,
            fleet,
            verbose: self.churn_verbose,
        };
        churn::validate(&spec.plan(None))?;
        Ok(Some(spec))
    }
}

/// "9101-9106" or "9101,9103" -> ports (no 0, no duplicates).
pub fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    let list = parse_cpu_list(s).map_err(|_| format!("bad port list {s:?} (e.g. 9101-9106)"))?;
    let mut out: Vec<u16> = Vec::with_capacity(list.len());
    for p in list {
        match u16::try_from(p) {
            Ok(p) if p != 0 && !out.contains(&p) => out.push(p),
            _ => return Err(format!("bad or repeated port {p} in {s:?}")),
        }
    }
    Ok(out)
}

/// Load model of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Open { rate: f64, arrivals: Arrivals },
    Closed,
}

/// A validated run description.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub url: String,
    pub mode: Mode,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub threads: usize,
    pub cpu_set: Option<Vec<usize>>,
    pub timeout: Duration,
    /// The encoded request, sent unchanged on every connection.
    pub request: Vec<u8>,
    pub head_request: bool,
    pub seed: u64,
    pub json: Option<std::path::PathBuf>,
    pub report: Option<std::path::PathBuf>,
    pub churn: Option<ChurnSpec>,
    /// Print the live progress line to stderr.
    pub progress: bool,
    /// TLS of every connection (https://).
    pub tls: Option<crate::net::Tls>,
    /// HTTP/2 (h2c or h2 over TLS) instead of HTTP/1.1.
    pub h2: Option<crate::plan::H2Plan>,
    /// Where to scrape the proxy's loop lag (`--loop-stats`).
    pub loop_stats: Option<crate::control::Endpoint>,
}

/// "10s", "500ms", "2m", "1.5s", "250us"; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?} (e.g. 10s, 500ms, 2m)"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (use h, m, s, ms, us)")),
    };
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// "0,2-3" -> [0, 2, 3].
pub fn parse_cpu_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("bad CPU list {s:?} (e.g. 0,2-3)");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b - a > 4096 {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    if out.is_empty() {
        return Err(format!("empty CPU list {s:?}"));
    }
    Ok(out)
}

impl Args {
    /// Validate and resolve everything up front so workers never fail on configuration.
    pub fn into_config(self) -> Result<Config, String> {
        let url = self.url.ok_or("a target URL is required")?;
        let target = parse_url(&url)?;
        let mode = if self.closed {
            Mode::Closed
        } else {
            let rate = self
                .rate
                .ok_or("--rate R is required (or --closed for max throughput)")?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(format!("--rate must be positive, got {rate}"));
            }
            let arrivals = if self.poisson {
                Arrivals::Poisson
            } else {
                Arrivals::Uniform
            };
            Mode::Open { rate, arrivals }
        };
        if self.connections == 0 || self.threads == 0 {
            return Err("--connections and --threads must be at least 1".into());
        }
        if self.threads > self.connections {
            return Err(format!(
                "--threads {} exceeds --connections {}: every thread needs a connection",
                self.threads, self.connections
            ));
        }
        if self.duration.is_zero() {
            return Err("--duration must be positive".into());
        }
        if self.timeout.is_zero() {
            return Err("--timeout must be positive".into());
        }
        let cpu_set = self.cpu_set.as_deref().map(parse_cpu_list).transpose()?;
        let churn = self.churn.into_spec()?;
        let loop_stats = self
            .loop_stats
            .as_deref()
            .map(|u| crate::control::Endpoint::parse(u).map_err(|e| format!("--loop-stats: {e}")))
            .transpose()?;
        // Resolve last: every cheaper check has had its chance to fail first.
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", target.host))?;
        let body = self.body.unwrap_or_default();
        let http2 = self.http2 || target.scheme == Scheme::H2c;
        if http2 && !(1..=10_000).contains(&self.streams) {
            return Err(format!("--streams must be 1..=10000, got {}", self.streams));
        }
        let tls = if target.scheme == Scheme::Https {
            let opts = crate::net::TlsOptions {
                tls13: self.tls_version == TlsVersion::V13,
                insecure: self.insecure,
                cacert: self.cacert,
                resumption: !self.no_resumption,
            };
            let alpn: &[u8] = if http2 { b"h2" } else { b"http/1.1" };
            Some(crate::net::Tls::new(&opts, &target.host, alpn)?)
        } else {
            if self.insecure || self.cacert.is_some() || self.no_resumption {
                return Err("--insecure, --cacert and --no-resumption need an https:// URL".into());
            }
            None
        };
        let h2 = if http2 {
            Some(h2_plan(
                &self.method,
                &target,
                &self.headers,
                body.as_bytes(),
                self.streams,
            )?)
        } else {
            None
        };
        let request = h1::encode_request(
            &self.method,
            &target.authority,
            &target.path,
            &self.headers,
            body.as_bytes(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Config {
            addr,
            url,
            mode,
            duration: self.duration,
            warmup: self.warmup,
            connections: self.connections,
            threads: self.threads,
            cpu_set,
            timeout: self.timeout,
            request,
            head_request: self.method.eq_ignore_ascii_case("HEAD"),
            seed: self.seed,
            json: self.json,
            report: self.report,
            churn,
            progress: self.progress
                || (!self.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())),
            tls,
            h2,
            loop_stats,
        })
    }
}

/// The HTTP/2 request: `:authority` from the URL, `-H` headers as given (names lowercased;
/// connection-specific ones are refused, HTTP/2 forbids them).
fn h2_plan(
    method: &str,
    target: &Target,
    headers: &[String],
    body: &[u8],
    streams: usize,
) -> Result<crate::plan::H2Plan, String> {
    let method = http::Method::from_bytes(method.as_bytes())
        .map_err(|_| format!("bad method {method:?}"))?;
    let scheme = if target.scheme == Scheme::Https {
        "https"
    } else {
        "http"
    };
    let uri: http::Uri = format!("{scheme}://{}{}", target.authority, target.path)
        .parse()
        .map_err(|e| format!("URL not usable for HTTP/2: {e}"))?;
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} must be 'name: value'"))?;
        let name = http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("bad header name in {h:?}"))?;
        if [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "host",
        ]
        .contains(&name.as_str())
        {
            return Err(format!(
                "header {name} cannot be sent over HTTP/2 (the URL gives :authority)"
            ));
        }
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("bad header value in {h:?}"))?;
        map.append(name, value);
    }
    if !body.is_empty() && !map.contains_key(http::header::CONTENT_LENGTH) {
        map.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
    }
    Ok(crate::plan::H2Plan {
        method,
        uri,
        headers: map,
        body: bytes::Bytes::copy_from_slice(body),
        streams,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8080, "/a/b?c=d")
        );
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = parse_url("http://localhost").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = parse_url("http://[::1]:81?x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 81, "/?x")
        );
        let t = parse_url("https://example.com/x").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::Https, 443));
        let t = parse_url("h2c://127.0.0.1:81/").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::H2c, 81));
        assert!(parse_url("h2://x/").unwrap_err().contains("--http2"));
        assert!(parse_url("h3://x/").unwrap_err().contains("not supported"));
        assert!(parse_url("x:80/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
    }

    #[test]
    fn protocols_and_tls_options() {
        let cfg = |args: &[&str]| {
            let mut v = vec!["lg", "--rate", "10"];
            v.extend_from_slice(args);
            Args::try_parse_from(v).unwrap().into_config()
        };
        let c = cfg(&["h2c://127.0.0.1:9/p?q", "-H", "X-A: b", "--streams", "3"]).unwrap();
        let h2 = c.h2.unwrap();
        assert!(c.tls.is_none());
        assert_eq!(h2.uri.to_string(), "http://127.0.0.1:9/p?q");
        assert_eq!(h2.streams, 3);
        assert_eq!(h2.headers["x-a"], "b");
        let c = cfg(&[
            "--http2",
            "--insecure",
            "--body",
            "xy",
            "https://127.0.0.1:9/",
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(c.h2.unwrap().headers["content-length"], "2");
        let c = cfg(&["--insecure", "https://127.0.0.1:9/"]).unwrap();
        assert!(c.h2.is_none());
        let tls = c.tls.unwrap();
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(cfg(&["--insecure", "http://127.0.0.1:9/"])
            .unwrap_err()
            .contains("https://"));
        assert!(
            cfg(&["--http2", "-H", "Connection: close", "http://127.0.0.1:9/"])
                .unwrap_err()
                .contains("HTTP/2")
        );
        assert!(cfg(&["--http2", "--streams", "0", "http://127.0.0.1:9/"])
            .unwrap_err()
            .contains("--streams"));
        let e = cfg(&["--cacert", "/nonexistent.pem", "https://127.0.0.1:9/"]).unwrap_err();
        assert!(e.contains("--cacert"), "{e}");
    }

    #[test]
    fn durations_and_cpus() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn rate_required_unless_closed() {
        let a = Args::try_parse_from(["lg", "http://127.0.0.1:1/"]).unwrap();
        assert!(a.into_config().unwrap_err().contains("--rate"));
        let a = Args::try_parse_from(["lg", "--closed", "http://127.0.0.1:1/"]).unwrap();
        assert_eq!(a.into_config().unwrap().mode, Mode::Closed);
        assert!(Args::try_parse_from(["lg", "--closed", "--rate", "5", "http://x/"]).is_err());
    }

    #[test]
    fn churn_options() {
        let parse = |extra: &[&str]| {
            let mut v = vec!["lg", "--rate", "10"];
            v.extend_from_slice(extra);
            v.push("http://127.0.0.1:9/");
            Args::try_parse_from(v).unwrap().into_config()
        };
        let c = parse(&[
            "--churn-every",
            "2s",
            "--churn-ports",
            "9101-9103",
            "--admin",
            "http://127.0.0.1:8001",
            "--churn-cluster",
            "fleet",
            "--fleet-control",
            "http://127.0.0.1:9100",
        ])
        .unwrap();
        let spec = c.churn.unwrap();
        assert_eq!(spec.mode, churn::Mode::Graceful);
        assert_eq!(spec.endpoints.len(), 3);
        assert_eq!(spec.endpoints[2].to_string(), "127.0.0.1:9103");
        assert_eq!(spec.drain, Duration::from_millis(500));
        assert!(
            matches!(spec.membership, Membership::Admin { ref cluster, .. } if cluster == "fleet")
        );
        assert!(parse(&["--churn-ports", "9101-9102"])
            .unwrap_err()
            .contains("--churn-every"));
        assert!(parse(&[
            "--churn-every",
            "1s",
            "--churn-ports",
            "9101-9102",
            "--admin",
            "http://127.0.0.1:1"
        ])
        .unwrap_err()
        .contains("--churn-cluster"));
        let e = parse(&[
            "--churn-every",
            "1s",
            "--churn-ports",
            "9101-9104",
            "--churn-mode",
            "abrupt",
        ]);
        assert!(e.unwrap_err().contains("--fleet-control"));
        let c = parse(&[
            "--churn-every",
            "1s",
            "--churn-ports",
            "9101,9102",
            "--churn-cmd",
            "true",
        ]);
        assert!(matches!(
            c.unwrap().churn.unwrap().membership,
            Membership::Cmd(_)
        ));
        assert!(parse_ports("9101-9102,9101").is_err());
        assert!(parse_ports("0-2").is_err());
        assert_eq!(parse_ports("9101-9103"), Ok(vec![9101, 9102, 9103]));
    }

    #[test]
    fn subcommands_parse_without_url() {
        let a = Args::try_parse_from([
            "lg",
            "upstream",
            "--ports",
            "9101-9102",
            "--control-port",
            "9100",
        ])
        .unwrap();
        assert!(
            matches!(a.command, Some(Command::Upstream(ref u)) if u.control_port == Some(9100))
        );
        let a =
            Args::try_parse_from(["lg", "demo", "--duration", "5s", "--report", "x.svg"]).unwrap();
        assert!(
            matches!(a.command, Some(Command::Demo(ref d)) if d.duration == Duration::from_secs(5))
        );
        assert!(Args::try_parse_from(["lg"]).is_err());
    }

    #[test]
    fn full_command_line() {
        let a = Args::try_parse_from([
            "lg",
            "--rate",
            "100",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "-c",
            "8",
            "-t",
            "2",
            "--cpu-set",
            "0-1",
            "--method",
            "POST",
            "-H",
            "a: b",
            "-H",
            "c: d",
            "--body",
            "x",
            "--poisson",
            "--json",
            "/tmp/x.json",
            "http://127.0.0.1:9/p",
        ])
        .unwrap();
        let c = a.into_config().unwrap();
        assert_eq!(c.cpu_set, Some(vec![0, 1]));
        assert_eq!((c.connections, c.threads), (8, 2));
        assert!(matches!(
            c.mode,
            Mode::Open {
                arrivals: Arrivals::Poisson,
                ..
            }
        ));
        let req = String::from_utf8(c.request).unwrap();
        assert!(
            req.starts_with("POST /p HTTP/1.1\r\nHost: 127.0.0.1:9\r\na: b\r\nc: d\r\n"),
            "{req}"
        );
        assert!(req.ends_with("Content-Length: 1\r\n\r\nx"), "{req}");
        let bad =
            Args::try_parse_from(["lg", "--rate", "1", "--cpu-set", "x", "http://h/"]).unwrap();
        assert!(bad.into_config().unwrap_err().contains("CPU list"));
    }
}
