//! Command line of `ringway-loadgen`, and its validation into a `Config` the workers can run
//! without re-checking anything (URL split into address and request target, durations parsed,
//! CPU list expanded, the request bytes encoded once).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Parser;

use crate::h1;
use crate::schedule::Arrivals;

#[derive(Debug, Parser)]
#[command(
    name = "ringway-loadgen",
    version,
    about = "Open-loop HTTP/1.1 load generator: latency is measured from each request's scheduled \
             time, so server stalls show up in the tail (no coordinated omission)"
)]
pub struct Args {
    /// Target URL (http:// only for now).
    pub url: String,
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
}

/// Parts of an http:// URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host header value: the authority as written.
    pub authority: String,
    pub host: String,
    pub port: u16,
    /// Path and query ("/" when absent).
    pub path: String,
}

/// Split an http:// URL; other schemes get a clear "not supported yet".
pub fn parse_url(url: &str) -> Result<Target, String> {
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _))
            if ["https", "h2", "h2c", "h3"].contains(&scheme.to_ascii_lowercase().as_str()) =>
        {
            return Err(format!("{scheme}:// is not supported yet (http:// only)"))
        }
        Some((scheme, _)) => return Err(format!("unknown scheme {scheme:?} (http:// only)")),
        None => return Err(format!("URL {url:?} needs a scheme, e.g. http://{url}")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let path = match path.split_once('#') {
        Some((p, _)) => p.to_string(),
        None => path,
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("URL {url:?}: expected http://host[:port]/path"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("URL {url:?}: unclosed IPv6 bracket"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p, url)?,
            None if after.is_empty() => 80,
            None => return Err(format!("URL {url:?}: junk after IPv6 address")),
        };
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), parse_port(p, url)?),
            None => (authority.to_string(), 80),
        }
    };
    if host.is_empty() {
        return Err(format!("URL {url:?}: empty host"));
    }
    Ok(Target {
        authority: authority.to_string(),
        host,
        port,
        path,
    })
}

fn parse_port(p: &str, url: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("URL {url:?}: bad port {p:?}"))
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
        let target = parse_url(&self.url)?;
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
        // Resolve last: every cheaper check has had its chance to fail first.
        let addr = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", target.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", target.host))?;
        let body = self.body.unwrap_or_default();
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
            url: self.url,
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
        })
    }
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
        let e = parse_url("https://x/").unwrap_err();
        assert!(e.contains("not supported yet"), "{e}");
        assert!(parse_url("h2c://x/")
            .unwrap_err()
            .contains("not supported yet"));
        assert!(parse_url("x:80/").is_err());
        assert!(parse_url("http://:80/").is_err());
        assert!(parse_url("http://h:99999/").is_err());
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
