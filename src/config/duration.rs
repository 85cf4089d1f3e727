//! Envoy durations: protobuf `Duration` in its JSON form (`"1.5s"`) or as `{seconds, nanos}`.
//!
//! Envoy accepts only what protobuf's JSON mapping accepts: a decimal number of seconds with at
//! most nine fractional digits followed by `s`. `"100ms"` or `"5m"` look plausible but Envoy
//! rejects them, so Ringway does too (a config that loads here must load in Envoy).

use serde_yaml_ng::Value;
use std::time::Duration;

use super::walk::{kind, obj, uint, Cx, Message};

/// Protobuf's limit: 10,000 years of seconds.
const MAX_SECONDS: u64 = 315_576_000_000;

/// Parses the JSON form of a protobuf Duration (`"5s"`, `"0.25s"`, `"1.000000001s"`).
pub fn parse(s: &str) -> Result<Duration, String> {
    if s.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    let Some(num) = s.strip_suffix('s') else {
        return Err(format!(
            "malformed duration {s:?} (expected seconds with a trailing s, e.g. \"5s\" or \"0.25s\")"
        ));
    };
    let (whole, frac) = match num.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (num, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f) || f.len() > 9) {
        return Err(format!(
            "malformed duration {s:?} (expected seconds with a trailing s and at most 9 decimals, e.g. \"5s\" or \"0.25s\")"
        ));
    }
    let secs: u64 = whole
        .parse()
        .ok()
        .filter(|n| *n <= MAX_SECONDS)
        .ok_or_else(|| format!("duration {s:?} is too large"))?;
    let nanos = match frac {
        Some(f) => {
            // Right-pad to nine digits: "25" means 250,000,000 ns.
            let n: u32 = f.parse().map_err(|_| format!("malformed duration {s:?}"))?;
            n * 10u32.pow(9 - f.len() as u32)
        }
        None => 0,
    };
    Ok(Duration::new(secs, nanos))
}

const DURATION: Message = Message {
    supported: &["seconds", "nanos"],
    unsupported: &[],
};

/// Reads a duration at `path` (string or `{seconds, nanos}`); records an error and returns
/// `None` when it is malformed or negative.
pub(crate) fn read(cx: &mut Cx, path: &str, v: &Value) -> Option<Duration> {
    match v {
        Value::String(s) => match parse(s) {
            Ok(d) => Some(d),
            Err(e) => {
                cx.err(path, e);
                None
            }
        },
        Value::Mapping(_) => {
            let o = obj(cx, path, v, &DURATION)?;
            let negative = |x: Option<&Value>| {
                x.and_then(|v| v.as_i64()).is_some_and(|n| n < 0)
                    || x.and_then(Value::as_str)
                        .is_some_and(|s| s.starts_with('-'))
            };
            if negative(o.get("seconds")) || negative(o.get("nanos")) {
                cx.err(path, "negative duration");
                return None;
            }
            let secs = match o.get("seconds") {
                Some(s) => uint(cx, &o.at("seconds"), s, MAX_SECONDS)?,
                None => 0,
            };
            let nanos = match o.get("nanos") {
                Some(n) => uint(cx, &o.at("nanos"), n, 999_999_999)?,
                None => 0,
            };
            Some(Duration::new(secs, u32::try_from(nanos).ok()?))
        }
        other => {
            cx.err(
                path,
                format!(
                    "expected a duration such as \"5s\" or {{seconds: 5}}, got {}",
                    kind(other)
                ),
            );
            None
        }
    }
}

/// A duration that must be strictly positive (e.g. `connect_timeout`).
pub(crate) fn read_positive(cx: &mut Cx, path: &str, v: &Value) -> Option<Duration> {
    let d = read(cx, path, v)?;
    if d.is_zero() {
        cx.err(path, "must be greater than 0s");
        return None;
    }
    Some(d)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_protobuf_json_durations() {
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0.25s").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("0.000000001s").unwrap(), Duration::from_nanos(1));
        assert_eq!(parse("3600s").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_what_envoy_rejects() {
        for bad in [
            "100ms",
            "5",
            "5m",
            "s",
            ".5s",
            "5.s",
            "-1s",
            "1.0000000001s",
            "1e3s",
            " 5s",
            "",
            "999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("-1s").unwrap_err().contains("negative"));
    }

    fn read_yaml(s: &str) -> (Option<Duration>, Vec<String>) {
        let mut cx = Cx::default();
        let v: Value = serde_yaml_ng::from_str(s).unwrap();
        let d = read(&mut cx, "t", &v);
        (
            d,
            cx.errs
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.message))
                .collect(),
        )
    }

    #[test]
    fn object_form() {
        assert_eq!(
            read_yaml("{seconds: 2, nanos: 500000000}").0,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(read_yaml("{nanos: 1}").0, Some(Duration::from_nanos(1)));
        assert_eq!(
            read_yaml("{seconds: \"3\"}").0,
            Some(Duration::from_secs(3))
        );
        let (d, e) = read_yaml("{seconds: -1}");
        assert_eq!((d, e), (None, vec!["t: negative duration".to_string()]));
        let (d, e) = read_yaml("{nanos: 1000000000}");
        assert!(d.is_none() && e[0].starts_with("t.nanos:"), "{e:?}");
        let (d, e) = read_yaml("{minutes: 1}");
        assert!(
            d.is_some() && e == ["t.minutes: unknown field minutes"],
            "{e:?}"
        );
    }

    #[test]
    fn wrong_types_name_the_path() {
        let (d, e) = read_yaml("5");
        assert!(
            d.is_none() && e[0].starts_with("t: expected a duration"),
            "{e:?}"
        );
        let (d, e) = read_yaml("\"100ms\"");
        assert!(
            d.is_none() && e[0].starts_with("t: malformed duration"),
            "{e:?}"
        );
    }

    #[test]
    fn positive_rejects_zero() {
        let mut cx = Cx::default();
        let v = Value::String("0s".into());
        assert_eq!(read_positive(&mut cx, "c", &v), None);
        assert_eq!(cx.errs[0].message, "must be greater than 0s");
    }
}
