//! Strict parsers for what Ringway prints: the admin's `/stats` text, `/stats/prometheus`
//! (the Prometheus text exposition format, 0.0.4) and access-log lines in Envoy's default format.
//! Strict so that a test fails on a malformed line instead of silently skipping it.

use std::collections::{BTreeMap, HashMap};

/// Parses `/stats`: one `name: value` per line. Integer values are returned; histogram summary
/// lines (`name: P0(...) P25(...)`, or `No recorded values`) are checked for shape and skipped.
pub fn parse_stats_text(body: &str) -> Result<BTreeMap<String, u64>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in body.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(": ")
            .ok_or_else(|| format!("line {}: no \": \" in {line:?}", i + 1))?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("line {}: bad stat name {name:?}", i + 1));
        }
        match value.parse::<u64>() {
            Ok(v) => {
                if out.insert(name.to_string(), v).is_some() {
                    return Err(format!("line {}: stat {name} printed twice", i + 1));
                }
            }
            Err(_) => {
                let histogram = value.starts_with("P0(") || value.contains("No recorded values");
                if !histogram {
                    return Err(format!(
                        "line {}: value of {name} is neither an integer nor a histogram: {value:?}",
                        i + 1
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// One Prometheus sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .map_err(|_| format!("bad sample value {s:?}")),
    }
}

/// Parses `{a="x",b="y"}` starting at `s` (which begins with `{`); returns labels and the rest.
type Labels = Vec<(String, String)>;

fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = &s[1..];
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape in label value: {other:?}")),
                },
                Some((_, '\n')) => return Err("newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.iter().any(|(n, _): &(String, String)| n == name) {
            return Err(format!("label {name} repeated"));
        }
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        rest = rest.trim_start_matches(' ');
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after label".into());
        }
    }
}

/// Parses the text exposition format strictly: `# TYPE` at most once per family and before its
/// samples, known types only, valid names and labels, parseable values, no duplicate series.
pub fn parse_prometheus(body: &str) -> Result<Vec<Sample>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen_family_samples: HashMap<String, bool> = HashMap::new();
    let mut series = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, line) in body.lines().enumerate() {
        let ln = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut parts = c.trim_start().splitn(3, ' ');
            match parts.next() {
                Some("TYPE") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {ln}: TYPE without name"))?;
                    let ty = parts
                        .next()
                        .ok_or(format!("line {ln}: TYPE without type"))?;
                    if !is_metric_name(name) {
                        return Err(format!("line {ln}: bad metric name {name:?}"));
                    }
                    if !matches!(
                        ty,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(format!("line {ln}: unknown type {ty:?}"));
                    }
                    if types.insert(name.to_string(), ty.to_string()).is_some() {
                        return Err(format!("line {ln}: second TYPE line for {name}"));
                    }
                    if seen_family_samples.contains_key(name) {
                        return Err(format!("line {ln}: TYPE for {name} after its samples"));
                    }
                }
                Some("HELP") => {
                    let name = parts
                        .next()
                        .ok_or(format!("line {ln}: HELP without name"))?;
                    if !is_metric_name(name) {
                        return Err(format!("line {ln}: bad metric name {name:?}"));
                    }
                }
                _ => {} // other comments are allowed
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or(format!("line {ln}: no value in {line:?}"))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(|e| format!("line {ln}: {e}: {line:?}"))?
        } else {
            (Vec::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or(format!("line {ln}: no space before value: {line:?}"))?;
        let mut vt = rest.split(' ');
        let value = parse_value(vt.next().unwrap_or("")).map_err(|e| format!("line {ln}: {e}"))?;
        if let Some(ts) = vt.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("line {ln}: bad timestamp {ts:?}"))?;
        }
        if vt.next().is_some() {
            return Err(format!("line {ln}: trailing fields: {line:?}"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|f| {
                    types
                        .get(*f)
                        .is_some_and(|t| t == "histogram" || t == "summary")
                })
            })
            .unwrap_or(name);
        seen_family_samples.insert(family.to_string(), true);
        if name.ends_with("_bucket") && family != name && !labels.iter().any(|(n, _)| n == "le") {
            return Err(format!("line {ln}: histogram bucket without le label"));
        }
        let mut key_labels = labels.clone();
        key_labels.sort();
        if !series.insert((name.to_string(), format!("{key_labels:?}"))) {
            return Err(format!("line {ln}: duplicate series {line:?}"));
        }
        out.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

/// One access-log line in Envoy's default format:
/// `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE%
/// %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%
/// "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%"
/// "%UPSTREAM_HOST%"`.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLine {
    pub start_time: String,
    pub method: String,
    pub path: String,
    pub protocol: String,
    pub code: u16,
    pub flags: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_service_time: String,
    pub forwarded_for: String,
    pub user_agent: String,
    pub request_id: String,
    pub authority: String,
    pub upstream_host: String,
}

/// Checks `2016-04-15T20:17:00.310Z` exactly (milliseconds, UTC).
fn is_start_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

/// Takes a `"..."` field (no escapes inside: Envoy does not escape) followed by a space or end.
fn quoted<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    let s = s
        .strip_prefix('"')
        .ok_or(format!("{what}: expected '\"'"))?;
    let end = s.find('"').ok_or(format!("{what}: unterminated quote"))?;
    let rest = &s[end + 1..];
    Ok((&s[..end], rest.strip_prefix(' ').unwrap_or(rest)))
}

pub fn parse_access_line(line: &str) -> Result<AccessLine, String> {
    let s = line
        .strip_prefix('[')
        .ok_or("line does not start with '['")?;
    let (start_time, s) = s.split_once("] ").ok_or("no '] ' after start time")?;
    if !is_start_time(start_time) {
        return Err(format!(
            "start time {start_time:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"
        ));
    }
    let (req, s) = quoted(s, "request line")?;
    let mut rp = req.split(' ');
    let (method, path, protocol) = match (rp.next(), rp.next(), rp.next(), rp.next()) {
        (Some(m), Some(p), Some(v), None) => (m, p, v),
        _ => {
            return Err(format!(
                "request field {req:?} is not \"METHOD PATH PROTOCOL\""
            ))
        }
    };
    let mut it = s.splitn(7, ' ');
    let mut next = |what: &str| it.next().ok_or(format!("missing {what}"));
    let code = next("response code")?
        .parse::<u16>()
        .map_err(|_| "bad response code")?;
    let flags = next("response flags")?.to_string();
    let bytes_received = next("bytes received")?
        .parse::<u64>()
        .map_err(|_| "bad bytes received")?;
    let bytes_sent = next("bytes sent")?
        .parse::<u64>()
        .map_err(|_| "bad bytes sent")?;
    let duration_ms = next("duration")?
        .parse::<u64>()
        .map_err(|_| "bad duration")?;
    let upstream_service_time = next("upstream service time")?.to_string();
    let s = next("quoted fields")?;
    if !(upstream_service_time == "-" || upstream_service_time.parse::<u64>().is_ok()) {
        return Err(format!(
            "upstream service time {upstream_service_time:?} is neither '-' nor an integer"
        ));
    }
    if !(flags == "-"
        || flags
            .split(',')
            .all(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_uppercase())))
    {
        return Err(format!(
            "response flags {flags:?} are not '-' or upper-case codes"
        ));
    }
    let (forwarded_for, s) = quoted(s, "x-forwarded-for")?;
    let (user_agent, s) = quoted(s, "user-agent")?;
    let (request_id, s) = quoted(s, "x-request-id")?;
    let (authority, s) = quoted(s, "authority")?;
    let (upstream_host, s) = quoted(s, "upstream host")?;
    if !s.is_empty() {
        return Err(format!("trailing text {s:?}"));
    }
    Ok(AccessLine {
        start_time: start_time.into(),
        method: method.into(),
        path: path.into(),
        protocol: protocol.into(),
        code,
        flags,
        bytes_received,
        bytes_sent,
        duration_ms,
        upstream_service_time,
        forwarded_for: forwarded_for.into(),
        user_agent: user_agent.into(),
        request_id: request_id.into(),
        authority: authority.into(),
        upstream_host: upstream_host.into(),
    })
}
