//! `/stats` in Envoy's three shapes: `name: value` text, JSON, and Prometheus exposition.
//!
//! All three start from one [`StatsSnapshot`]: every counter and gauge summed over the worker
//! slots, under its Envoy name (`cluster.service1.upstream_rq_200`) and, for Prometheus, under the
//! tag-extracted name and labels Envoy would give it
//! (`envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="service1"}`).
//! Histograms are the admin side's merged HdrHistograms (microseconds), printed in milliseconds as
//! Envoy does. Two scopes with the same name (two listeners sharing a `stat_prefix`) are merged, as
//! Envoy shares one scope between them, so no name or series ever appears twice.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::stats::histograms::{HistogramId, QUANTILES};
use crate::stats::{ClusterStat, HttpStat, ListenerStat, ServerStat, Stats};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One counter or gauge.
#[derive(Debug, Clone)]
pub struct Stat {
    pub value: u64,
    pub kind: Kind,
    /// Prometheus metric name (`envoy_cluster_upstream_rq_total`).
    pub prom_name: String,
    /// Prometheus labels, in output order.
    pub labels: Vec<(&'static str, String)>,
}

/// One histogram (recorded in microseconds, shown in its name's unit).
pub struct Hist {
    pub prom_name: String,
    pub labels: Vec<(&'static str, String)>,
    pub hist: Histogram<u64>,
    /// Recorded microseconds per shown unit: 1000 for `_time` (ms), 1 for `_us` histograms.
    pub micros_per_unit: f64,
}

/// Server-level values that live outside [`Stats`].
#[derive(Debug, Clone, Copy)]
pub struct ServerGauges {
    pub live: bool,
    /// Envoy's `server.state`: 0 live, 1 draining.
    pub state: u64,
    pub uptime_secs: u64,
    pub concurrency: u64,
}

/// Everything `/stats` shows, keyed by Envoy stat name (sorted).
pub struct StatsSnapshot {
    pub stats: BTreeMap<String, Stat>,
    pub hists: BTreeMap<String, Hist>,
    /// Only stats whose name contains this are collected (`?filter=`): a scraper polling one
    /// histogram every second (`ringway-loadgen --loop-stats`) must not cost a copy of every
    /// latency histogram, on a thread that may share the worker's CPU.
    filter: Option<String>,
}

/// Envoy's Prometheus histogram bucket bounds, in milliseconds.
pub const PROM_BUCKETS_MS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

impl StatsSnapshot {
    fn wanted(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }

    fn add(
        &mut self,
        name: String,
        value: u64,
        kind: Kind,
        prom_name: String,
        labels: Vec<(&'static str, String)>,
    ) {
        if !self.wanted(&name) {
            return;
        }
        self.stats
            .entry(name)
            .and_modify(|s| s.value = s.value.wrapping_add(value))
            .or_insert(Stat {
                value,
                kind,
                prom_name,
                labels,
            });
    }

    fn add_hist(
        &mut self,
        name: String,
        prom_name: String,
        labels: Vec<(&'static str, String)>,
        id: HistogramId,
        h: &Histogram<u64>,
    ) {
        if !self.wanted(&name) {
            return;
        }
        match self.hists.get_mut(&name) {
            Some(existing) => {
                let _ = existing.hist.add(h);
            }
            None => {
                self.hists.insert(
                    name,
                    Hist {
                        prom_name,
                        labels,
                        hist: h.clone(),
                        micros_per_unit: id.micros_per_unit(),
                    },
                );
            }
        }
    }
}

fn kind_of(gauge: bool) -> Kind {
    if gauge {
        Kind::Gauge
    } else {
        Kind::Counter
    }
}

/// Sums every stat object into a snapshot (only the names `filter` keeps, when given).
pub fn collect(stats: &Stats, server: ServerGauges, filter: Option<&str>) -> StatsSnapshot {
    let mut s = StatsSnapshot {
        stats: BTreeMap::new(),
        hists: BTreeMap::new(),
        filter: filter.map(str::to_owned),
    };
    for (stat, v) in [
        ("live", u64::from(server.live)),
        ("state", server.state),
        ("uptime", server.uptime_secs),
        ("concurrency", server.concurrency),
    ] {
        s.add(
            format!("server.{stat}"),
            v,
            Kind::Gauge,
            format!("envoy_server_{stat}"),
            Vec::new(),
        );
    }
    for st in ServerStat::ALL {
        s.add(
            st.name().to_owned(),
            stats.server.get(st),
            kind_of(st.is_gauge()),
            format!("envoy_{}", st.name().replace('.', "_")),
            Vec::new(),
        );
    }
    for l in &stats.listeners {
        for st in ListenerStat::ALL {
            if st.is_ssl() && !l.tls {
                continue;
            }
            s.add(
                format!("listener.{}.{}", l.stat_name, st.name()),
                l.get(st),
                kind_of(st.is_gauge()),
                // `ssl.versions.TLSv1.2` → `envoy_listener_ssl_versions_TLSv1_2`.
                format!("envoy_listener_{}", st.name().replace('.', "_")),
                vec![("envoy_listener_address", l.stat_name.clone())],
            );
        }
    }
    for h in &stats.http {
        let p = &h.stat_prefix;
        let tag = || ("envoy_http_conn_manager_prefix", p.clone());
        for st in HttpStat::ALL {
            s.add(
                format!("http.{p}.{}", st.name()),
                h.get(st),
                kind_of(st.is_gauge()),
                format!("envoy_http_{}", st.name().replace('.', "_")),
                vec![tag()],
            );
        }
        for (code, n) in h.codes.nonzero() {
            s.add(
                format!("http.{p}.downstream_rq_{code}"),
                n,
                Kind::Counter,
                "envoy_http_downstream_rq".to_owned(),
                vec![("envoy_response_code", code.to_string()), tag()],
            );
        }
        // Envoy creates all five class counters with the connection manager: zeros show.
        for (i, n) in h.codes.classes().iter().enumerate() {
            s.add(
                format!("http.{p}.downstream_rq_{}xx", i + 1),
                *n,
                Kind::Counter,
                "envoy_http_downstream_rq_xx".to_owned(),
                vec![("envoy_response_code_class", (i + 1).to_string()), tag()],
            );
        }
    }
    for c in &stats.clusters {
        let name = &c.name;
        let tag = || ("envoy_cluster_name", name.clone());
        for st in ClusterStat::ALL {
            if st.is_ssl() && !c.tls {
                continue;
            }
            s.add(
                format!("cluster.{name}.{}", st.name()),
                c.get(st),
                kind_of(st.is_gauge()),
                // `health_check.attempt` → `envoy_cluster_health_check_attempt`, as Envoy does.
                format!("envoy_cluster_{}", st.name().replace('.', "_")),
                vec![tag()],
            );
        }
        for b in crate::upstream::admission::Breaker::ALL {
            let (open, remaining) = c.breakers.published(b);
            let (open_name, remaining_name) = b.gauge_names();
            for (stat, v) in [(open_name, open), (remaining_name, remaining)] {
                s.add(
                    format!("cluster.{name}.circuit_breakers.default.{stat}"),
                    v,
                    Kind::Gauge,
                    format!("envoy_cluster_circuit_breakers_default_{stat}"),
                    vec![tag()],
                );
            }
        }
        for (code, n) in c.codes.nonzero() {
            s.add(
                format!("cluster.{name}.upstream_rq_{code}"),
                n,
                Kind::Counter,
                "envoy_cluster_upstream_rq".to_owned(),
                vec![("envoy_response_code", code.to_string()), tag()],
            );
        }
        // Envoy creates the cluster's class counters on first use: only seen classes show.
        for (i, n) in c.codes.classes().iter().enumerate() {
            if *n > 0 {
                s.add(
                    format!("cluster.{name}.upstream_rq_{}xx", i + 1),
                    *n,
                    Kind::Counter,
                    "envoy_cluster_upstream_rq_xx".to_owned(),
                    vec![("envoy_response_code_class", (i + 1).to_string()), tag()],
                );
            }
        }
    }
    // Envoy's watchdog counters: per worker thread, and over all workers.
    let loops = &stats.loops;
    for (name, per) in [
        ("watchdog_miss", LoopHealthCounter::Miss),
        ("watchdog_mega_miss", LoopHealthCounter::MegaMiss),
    ] {
        let mut total = 0;
        for w in 0..loops.workers() {
            let v = match per {
                LoopHealthCounter::Miss => loops.misses(w),
                LoopHealthCounter::MegaMiss => loops.mega_misses(w),
            };
            total += v;
            s.add(
                format!("server.worker_{w}.{name}"),
                v,
                Kind::Counter,
                format!("envoy_server_{name}"),
                vec![("envoy_worker_id", w.to_string())],
            );
        }
        s.add(
            format!("workers.{name}"),
            total,
            Kind::Counter,
            format!("envoy_workers_{name}"),
            Vec::new(),
        );
    }
    stats.histograms.with_merged(|id, h| match id {
        HistogramId::UpstreamRqTime(i) => {
            if let Some(c) = stats.clusters.get(i) {
                s.add_hist(
                    format!("cluster.{}.upstream_rq_time", c.name),
                    "envoy_cluster_upstream_rq_time".to_owned(),
                    vec![("envoy_cluster_name", c.name.clone())],
                    id,
                    h,
                );
            }
        }
        HistogramId::DownstreamRqTime(i) => {
            if let Some(hs) = stats.http.get(i) {
                s.add_hist(
                    format!("http.{}.downstream_rq_time", hs.stat_prefix),
                    "envoy_http_downstream_rq_time".to_owned(),
                    vec![("envoy_http_conn_manager_prefix", hs.stat_prefix.clone())],
                    id,
                    h,
                );
            }
        }
        HistogramId::LoopDuration(w) | HistogramId::PollDelay(w) => {
            let what = match id {
                HistogramId::LoopDuration(_) => "loop_duration_us",
                _ => "poll_delay_us",
            };
            s.add_hist(
                format!("listener_manager.worker_{w}.dispatcher.{what}"),
                format!("envoy_listener_manager_dispatcher_{what}"),
                vec![("envoy_worker_id", w.to_string())],
                id,
                h,
            );
        }
    });
    s
}

#[derive(Clone, Copy)]
enum LoopHealthCounter {
    Miss,
    MegaMiss,
}

/// `/stats` query options. `filter` is a plain substring match on the stat name (Envoy takes a
/// regular expression; a substring covers the common `?filter=cluster.service1` use).
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    pub filter: Option<String>,
    pub used_only: bool,
}

impl StatsQuery {
    fn keep(&self, name: &str) -> bool {
        self.filter.as_deref().is_none_or(|f| name.contains(f))
    }
}

/// Quantile `q` in the histogram's unit. HdrHistogram answers with the top of the value's
/// bucket; the bottom is printed instead so that recorded round values (40 ms) print as
/// themselves.
fn quantile(h: &Hist, q: f64) -> f64 {
    h.hist.lowest_equivalent(h.hist.value_at_quantile(q)) as f64 / h.micros_per_unit
}

/// `P99.9` style label for a quantile.
fn quantile_label(q: f64) -> f64 {
    (q * 1000.0).round() / 10.0
}

/// Envoy's `/stats` text: sorted `name: value` lines, then histogram summaries.
pub fn text(s: &StatsSnapshot, q: &StatsQuery) -> String {
    let mut out = String::with_capacity(64 * s.stats.len());
    for (name, st) in &s.stats {
        if q.keep(name) && !(q.used_only && st.value == 0) {
            let _ = writeln!(out, "{name}: {}", st.value);
        }
    }
    for (name, h) in &s.hists {
        if !q.keep(name) || (q.used_only && h.hist.is_empty()) {
            continue;
        }
        let _ = write!(out, "{name}:");
        if h.hist.is_empty() {
            out.push_str(" No recorded values");
        } else {
            for qu in QUANTILES {
                // Ringway keeps cumulative histograms only; Envoy prints `nan` for an empty
                // interval, which is what the interval half always is here.
                let _ = write!(out, " P{}(nan,{})", quantile_label(qu), quantile(h, qu));
            }
        }
        out.push('\n');
    }
    out
}

/// Envoy's `/stats?format=json`.
pub fn json(s: &StatsSnapshot, q: &StatsQuery) -> Value {
    let mut stats: Vec<Value> = s
        .stats
        .iter()
        .filter(|(name, st)| q.keep(name) && !(q.used_only && st.value == 0))
        .map(|(name, st)| json!({"name": name, "value": st.value}))
        .collect();
    let computed: Vec<Value> = s
        .hists
        .iter()
        .filter(|(name, h)| q.keep(name) && !(q.used_only && h.hist.is_empty()))
        .map(|(name, h)| {
            let values: Vec<Value> = QUANTILES
                .iter()
                .map(|&qu| {
                    let cumulative = if h.hist.is_empty() {
                        Value::Null
                    } else {
                        json!(quantile(h, qu))
                    };
                    json!({"interval": null, "cumulative": cumulative})
                })
                .collect();
            json!({"name": name, "values": values})
        })
        .collect();
    let supported: Vec<f64> = QUANTILES.iter().map(|&q| quantile_label(q)).collect();
    stats.push(json!({"histograms": {
        "supported_quantiles": supported,
        "computed_quantiles": computed,
    }}));
    json!({ "stats": stats })
}

/// Escapes a Prometheus label value (backslash, quote, newline).
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(out: &mut String, labels: &[(&'static str, String)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (k, v) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"");
        escape_label(v, out);
        out.push('"');
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

/// Prometheus text exposition (version 0.0.4) with Envoy's names and labels: counters, then
/// gauges, then histograms, one `# TYPE` line per metric name.
pub fn prometheus(s: &StatsSnapshot, q: &StatsQuery) -> String {
    // metric name -> series, grouped so each name's series follow its single TYPE line.
    let mut counters: BTreeMap<&str, Vec<&Stat>> = BTreeMap::new();
    let mut gauges: BTreeMap<&str, Vec<&Stat>> = BTreeMap::new();
    for (name, st) in &s.stats {
        if !q.keep(name) || (q.used_only && st.value == 0) {
            continue;
        }
        let group = match st.kind {
            Kind::Counter => &mut counters,
            Kind::Gauge => &mut gauges,
        };
        group.entry(st.prom_name.as_str()).or_default().push(st);
    }
    let mut out = String::with_capacity(96 * s.stats.len());
    for (group, ty) in [(&counters, "counter"), (&gauges, "gauge")] {
        for (metric, series) in group {
            let _ = writeln!(out, "# TYPE {metric} {ty}");
            for st in series {
                out.push_str(metric);
                write_labels(&mut out, &st.labels, None);
                let _ = writeln!(out, " {}", st.value);
            }
        }
    }
    let mut hists: BTreeMap<&str, Vec<&Hist>> = BTreeMap::new();
    for (name, h) in &s.hists {
        if !q.keep(name) || (q.used_only && h.hist.is_empty()) {
            continue;
        }
        hists.entry(h.prom_name.as_str()).or_default().push(h);
    }
    for (metric, series) in hists {
        let _ = writeln!(out, "# TYPE {metric} histogram");
        for h in series {
            let buckets = bucket_counts(h);
            for (bound, n) in PROM_BUCKETS_MS.iter().zip(buckets) {
                let _ = write!(out, "{metric}_bucket");
                write_labels(&mut out, &h.labels, Some(&bound.to_string()));
                let _ = writeln!(out, " {n}");
            }
            let _ = write!(out, "{metric}_bucket");
            write_labels(&mut out, &h.labels, Some("+Inf"));
            let _ = writeln!(out, " {}", h.hist.len());
            let _ = write!(out, "{metric}_sum");
            write_labels(&mut out, &h.labels, None);
            let sum = h.hist.mean() * h.hist.len() as f64 / h.micros_per_unit;
            let _ = writeln!(out, " {sum}");
            let _ = write!(out, "{metric}_count");
            write_labels(&mut out, &h.labels, None);
            let _ = writeln!(out, " {}", h.hist.len());
        }
    }
    out
}

/// Cumulative counts at each of [`PROM_BUCKETS_MS`] (Envoy's default bounds, in the histogram's
/// unit: milliseconds for `_time`, microseconds for `_us`). A recorded value counts toward a
/// bound when the low end of its HdrHistogram bucket is within it, so a value recorded exactly
/// at a bound lands in that bound's bucket.
fn bucket_counts(hist: &Hist) -> [u64; PROM_BUCKETS_MS.len()] {
    let h = &hist.hist;
    let mut per = [0u64; PROM_BUCKETS_MS.len()];
    for v in h.iter_recorded() {
        let low_us = h.lowest_equivalent(v.value_iterated_to());
        if let Some(i) = PROM_BUCKETS_MS
            .iter()
            .position(|b| low_us as f64 <= b * hist.micros_per_unit)
        {
            per[i] += v.count_at_value();
        }
    }
    let mut acc = 0;
    for n in per.iter_mut() {
        acc += *n;
        *n = acc;
    }
    per
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::admin::test_support::{bootstrap, server_gauges};
    use crate::stats::histograms::HistogramId;
    use std::collections::HashSet;

    fn populated() -> std::sync::Arc<Stats> {
        let cfg = bootstrap();
        let stats = Stats::new(&cfg, 2);
        let c = &stats.clusters[0];
        c.add(0, ClusterStat::UpstreamRqTotal, 20);
        c.add(1, ClusterStat::UpstreamRqTotal, 10);
        c.inc(0, ClusterStat::UpstreamCxActive);
        c.inc(1, ClusterStat::UpstreamCxActive);
        c.dec(0, ClusterStat::UpstreamCxActive);
        for _ in 0..29 {
            c.codes.inc(0, 200);
        }
        c.codes.inc(1, 503);
        let h = &stats.http[0];
        h.add(0, HttpStat::DownstreamRqTotal, 30);
        h.codes.inc(1, 404);
        stats.listeners[0].inc(1, ListenerStat::DownstreamCxTotal);
        stats
            .server
            .add(1, crate::stats::ServerStat::AccessLogDropped, 7);
        let mut w = stats.histograms.worker(1, 1);
        w.record(HistogramId::UpstreamRqTime(0), 1_000);
        w.record(HistogramId::UpstreamRqTime(0), 2_000);
        w.record(HistogramId::UpstreamRqTime(0), 40_000);
        w.flush();
        stats
    }

    #[test]
    fn text_has_envoy_lines_sorted() {
        let stats = populated();
        let snap = collect(&stats, server_gauges(), None);
        let out = text(&snap, &StatsQuery::default());
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "cluster.service1.upstream_rq_total: 30",
            "cluster.service1.upstream_cx_active: 1",
            "cluster.service1.upstream_rq_200: 29",
            "cluster.service1.upstream_rq_503: 1",
            "cluster.service1.upstream_rq_2xx: 29",
            "cluster.service1.upstream_rq_5xx: 1",
            "cluster.service1.membership_total: 0",
            "http.ingress_http.downstream_rq_total: 30",
            "http.ingress_http.downstream_rq_404: 1",
            "http.ingress_http.downstream_rq_1xx: 0",
            "http.ingress_http.downstream_rq_4xx: 1",
            "listener.0.0.0.0_10000.downstream_cx_total: 1",
            "listener.0.0.0.0_10000.downstream_global_cx_overflow: 0",
            "access_log.dropped: 7",
            "server.live: 1",
            "server.state: 0",
            "server.uptime: 12",
            "server.concurrency: 2",
            "cluster.service1.upstream_rq_time: P0(nan,1) P25(nan,1) P50(nan,2) P75(nan,40) \
             P90(nan,40) P95(nan,40) P99(nan,40) P99.9(nan,40) P100(nan,40)",
            "http.ingress_http.downstream_rq_time: No recorded values",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in\n{out}");
        }
        // The cluster's unseen classes are not created; 4xx on the cluster never happened.
        assert!(!out.contains("cluster.service1.upstream_rq_4xx"));
        // Counters and gauges sorted by name, histograms after them.
        let plain: Vec<&str> = lines
            .iter()
            .filter(|l| !l.contains("rq_time"))
            .map(|l| l.split(": ").next().unwrap())
            .collect();
        let mut sorted = plain.clone();
        sorted.sort();
        assert_eq!(plain, sorted);
        assert!(lines[lines.len() - 2].starts_with("cluster.service1.upstream_rq_time"));
    }

    /// A filtered scrape collects only what it shows: no copy of the other histograms.
    #[test]
    fn a_filtered_collect_holds_only_the_matching_stats() {
        let stats = populated();
        let snap = collect(&stats, server_gauges(), Some("upstream_rq_2"));
        assert!(snap.hists.is_empty());
        assert_eq!(
            snap.stats.keys().collect::<Vec<_>>(),
            [
                "cluster.service1.upstream_rq_200",
                "cluster.service1.upstream_rq_2xx"
            ]
        );
        let all = collect(&stats, server_gauges(), None);
        assert!(!all.hists.is_empty() && all.stats.len() > 10);
    }

    #[test]
    fn filter_and_usedonly() {
        let stats = populated();
        let snap = collect(&stats, server_gauges(), None);
        let q = StatsQuery {
            filter: Some("upstream_rq_2".into()),
            used_only: false,
        };
        assert_eq!(
            text(&snap, &q),
            "cluster.service1.upstream_rq_200: 29\ncluster.service1.upstream_rq_2xx: 29\n"
        );
        let q = StatsQuery {
            filter: Some("http.".into()),
            used_only: true,
        };
        assert_eq!(
            text(&snap, &q),
            "http.ingress_http.downstream_rq_404: 1\nhttp.ingress_http.downstream_rq_4xx: 1\n\
             http.ingress_http.downstream_rq_total: 30\n"
        );
    }

    #[test]
    fn json_shape() {
        let stats = populated();
        let snap = collect(&stats, server_gauges(), None);
        let v = json(
            &snap,
            &StatsQuery {
                filter: Some("cluster.service1.upstream_rq_".into()),
                used_only: true,
            },
        );
        let arr = v["stats"].as_array().unwrap();
        assert!(arr.contains(&json!({"name": "cluster.service1.upstream_rq_total", "value": 30})));
        let hist = &arr.last().unwrap()["histograms"];
        assert_eq!(hist["supported_quantiles"][7], json!(99.9));
        let cq = &hist["computed_quantiles"][0];
        assert_eq!(cq["name"], "cluster.service1.upstream_rq_time");
        assert_eq!(
            cq["values"][8],
            json!({"interval": null, "cumulative": 40.0})
        );
    }

    #[test]
    fn prometheus_names_and_labels() {
        let stats = populated();
        let out = prometheus(
            &collect(&stats, server_gauges(), None),
            &StatsQuery::default(),
        );
        for want in [
            "# TYPE envoy_cluster_upstream_rq_total counter",
            "envoy_cluster_upstream_rq_total{envoy_cluster_name=\"service1\"} 30",
            "# TYPE envoy_cluster_upstream_cx_active gauge",
            "envoy_cluster_upstream_rq{envoy_response_code=\"200\",envoy_cluster_name=\"service1\"} 29",
            "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"5\",envoy_cluster_name=\"service1\"} 1",
            "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress_http\"} 30",
            "envoy_http_downstream_rq{envoy_response_code=\"404\",envoy_http_conn_manager_prefix=\"ingress_http\"} 1",
            "envoy_http_downstream_rq_xx{envoy_response_code_class=\"2\",envoy_http_conn_manager_prefix=\"ingress_http\"} 0",
            "envoy_listener_downstream_cx_total{envoy_listener_address=\"0.0.0.0_10000\"} 1",
            "# TYPE envoy_server_live gauge",
            "envoy_server_live 1",
            "envoy_server_uptime 12",
            "envoy_server_concurrency 2",
            "# TYPE envoy_cluster_upstream_rq_time histogram",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"0.5\"} 0",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"1\"} 1",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"5\"} 2",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"25\"} 2",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"50\"} 3",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"3600000\"} 3",
            "envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name=\"service1\",le=\"+Inf\"} 3",
            "envoy_cluster_upstream_rq_time_count{envoy_cluster_name=\"service1\"} 3",
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"ingress_http\"} 0",
        ] {
            assert!(out.lines().any(|l| l == want), "missing {want:?} in\n{out}");
        }
        let sum_line = out
            .lines()
            .find(|l| l.starts_with("envoy_cluster_upstream_rq_time_sum"))
            .unwrap();
        let sum: f64 = sum_line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((sum - 43.0).abs() < 0.1, "{sum_line}");
    }

    /// A minimal exposition-format parser: every sample line is `name{labels} value`, every
    /// metric has a `# TYPE` line before its first sample, and no series repeats.
    #[test]
    fn prometheus_output_parses() {
        let stats = populated();
        let mut cfg = bootstrap();
        // A second listener sharing the stat prefix must not duplicate series.
        let mut l2 = cfg.listeners[0].clone();
        l2.address = "127.0.0.1:10001".parse().unwrap();
        cfg.listeners.push(l2);
        let stats2 = Stats::new(&cfg, 1);
        for s in [&stats, &stats2] {
            let out = prometheus(&collect(s, server_gauges(), None), &StatsQuery::default());
            let mut typed: HashSet<String> = HashSet::new();
            let mut series: HashSet<String> = HashSet::new();
            for line in out.lines() {
                if let Some(rest) = line.strip_prefix("# TYPE ") {
                    let mut parts = rest.split(' ');
                    let name = parts.next().unwrap().to_owned();
                    let ty = parts.next().unwrap();
                    assert!(["counter", "gauge", "histogram"].contains(&ty), "{line}");
                    assert!(parts.next().is_none(), "{line}");
                    assert!(typed.insert(name), "duplicate TYPE: {line}");
                    continue;
                }
                assert!(!line.starts_with('#'), "{line}");
                let (series_id, value) = line.rsplit_once(' ').unwrap();
                value.parse::<f64>().unwrap();
                let name_end = series_id.find('{').unwrap_or(series_id.len());
                let name = &series_id[..name_end];
                assert!(
                    !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':'),
                    "{line}"
                );
                if name_end < series_id.len() {
                    let labels = series_id[name_end + 1..].strip_suffix('}').unwrap();
                    for kv in labels.split("\",") {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                        assert!(!v.trim_end_matches('"').contains('"'), "{line}");
                    }
                }
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                    .unwrap_or(name);
                assert!(typed.contains(base), "no TYPE before {line}");
                assert!(
                    series.insert(series_id.to_owned()),
                    "duplicate series {line}"
                );
            }
            assert!(series.len() > 50);
        }
    }

    #[test]
    fn labels_are_escaped() {
        let mut s = String::new();
        write_labels(&mut s, &[("a", "x\"y\\z\n".into())], Some("1"));
        assert_eq!(s, "{a=\"x\\\"y\\\\z\\n\",le=\"1\"}");
    }
}
