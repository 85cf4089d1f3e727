//! The `--report` chart: latency percentiles (p50, p99, max) per interval over the measured
//! window on a log-scale millisecond axis, with every churn action as a vertical mark, written
//! as a self-contained SVG (or an HTML page embedding it when the file name ends in `.html`).
//!
//! Hand-written rather than through a plotting crate: the chart is a few polylines and lines,
//! and a dependency-free writer keeps the output stable and reviewable. A log axis because a
//! 500 ms stall next to a 0.2 ms median is the point of the chart; on a linear axis the median
//! would be a flat line at zero. All text is XML-escaped.

use std::fmt::Write as _;

use crate::loop_lag::LagPoint;
use crate::timeline::Point;

/// A vertical mark: time (s since the window start), label, and whether it is a failure.
#[derive(Debug, Clone)]
pub struct Mark {
    pub t: f64,
    pub label: String,
    /// Removal/stop (red) vs start/add (green).
    pub down: bool,
    pub failed: bool,
}

const W: f64 = 960.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// A plotted line: name, colour, and the value it takes from a point.
type Series = (&'static str, &'static str, fn(&Point) -> f64);
/// A loop-lag line: name, colour, dash pattern, and the value it takes from a point.
type LagSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&LagPoint) -> f64,
);

/// XML-escape text and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

/// Render the chart. `duration` is the measured window in seconds; `interval` the series step;
/// `lag` the proxy's loop lag per interval (`--loop-stats`), drawn dashed when present.
pub fn chart(
    title: &str,
    points: &[Point],
    interval: f64,
    duration: f64,
    marks: &[Mark],
    lag: &[LagPoint],
) -> String {
    let duration = duration.max(interval).max(1e-3);
    // Log-scale bounds: whole decades around the data, at least 0.1 .. 10 ms.
    let vals = points
        .iter()
        .filter(|p| p.completed > 0)
        .flat_map(|p| [p.p50_ms, p.p99_ms, p.max_ms])
        .chain(lag.iter().flat_map(|l| [l.p99_ms, l.max_ms]))
        .filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = vals.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lo_dec = if lo == f64::MAX {
        -1
    } else {
        (lo.log10().floor() as i32).min(-1)
    };
    let hi_dec = (hi.max(1e-9).log10().ceil() as i32).max(lo_dec + 2).max(1);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + pw * (t / duration).clamp(0.0, 1.0);
    let y = |ms: f64| {
        let v = ms.max(10f64.powi(lo_dec)).log10();
        TOP + ph * (1.0 - (v - f64::from(lo_dec)) / f64::from(hi_dec - lo_dec))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{W}" height="{H}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    // Horizontal grid: one line per decade.
    for d in lo_dec..=hi_dec {
        let v = 10f64.powi(d);
        let yy = y(v);
        let label = if d < 0 {
            format!("{v}")
        } else {
            format!("{v:.0}")
        };
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label} ms</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    // Time axis: about ten ticks at a round step.
    let step = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
    ]
    .into_iter()
    .find(|st| duration / st <= 12.0)
    .unwrap_or(7200.0);
    let mut t = 0.0;
    while t <= duration + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#999"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t}s</text>"##,
            H - BOTTOM,
            H - BOTTOM + 5.0,
            H - BOTTOM + 18.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    // Churn marks under the lines.
    for m in marks {
        let xx = x(m.t);
        let color = match (m.failed, m.down) {
            (true, _) => "#000",
            (false, true) => "#d62728",
            (false, false) => "#2ca02c",
        };
        let dash = if m.failed { "2,2" } else { "5,3" };
        let _ = writeln!(
            s,
            r#"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="{dash}" stroke-opacity="0.7"><title>{}</title></line>"#,
            H - BOTTOM,
            esc(&m.label)
        );
    }
    // Series: points at interval midpoints; empty intervals break the line.
    let series: [Series; 3] = [
        ("p50", "#1f77b4", |p| p.p50_ms),
        ("p99", "#ff7f0e", |p| p.p99_ms),
        ("max", "#9467bd", |p| p.max_ms),
    ];
    for (i, (name, color, get)) in series.iter().enumerate() {
        let mut d = String::new();
        let mut pen_down = false;
        for p in points {
            if p.completed == 0 {
                pen_down = false;
                continue;
            }
            let cmd = if pen_down { 'L' } else { 'M' };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x(p.t + interval / 2.0), y(get(p)));
            pen_down = true;
        }
        if !d.is_empty() {
            let _ = writeln!(
                s,
                r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.8"><title>{name}</title></path>"#,
                d.trim_end()
            );
        }
        let lx = LEFT + 10.0 + 90.0 * i as f64;
        let ly = H - 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 22.0,
            lx + 27.0,
            ly + 4.0
        );
    }
    // The proxy's loop lag (bucket bounds; a stall past the last bucket is drawn at the top).
    let lag_series: [LagSeries; 2] = [
        ("loop lag p99", "#17becf", "6,3", |l| l.p99_ms),
        ("loop lag max", "#8c564b", "2,3", |l| l.max_ms),
    ];
    for (i, (name, color, dash, get)) in lag_series.iter().enumerate() {
        if lag.is_empty() {
            break;
        }
        let mut d = String::new();
        for (k, l) in lag.iter().enumerate() {
            let v = get(l);
            let v = if v.is_finite() { v } else { 10f64.powi(hi_dec) };
            let cmd = if k == 0 { 'M' } else { 'L' };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", x(l.t - interval / 2.0), y(v));
        }
        let _ = writeln!(
            s,
            r#"<path d="{}" fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dash}"><title>proxy {name} (poll_delay_us bucket bound)</title></path>"#,
            d.trim_end()
        );
        let lx = LEFT + 560.0 + 120.0 * i as f64;
        let ly = H - 14.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            lx + 22.0,
            lx + 27.0,
            ly + 4.0
        );
    }
    let lx = LEFT + 290.0;
    let ly = H - 14.0;
    let _ = writeln!(
        s,
        r##"<line x1="{lx}" y1="{:.1}" x2="{lx}" y2="{:.1}" stroke="#d62728" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}">remove/stop</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#2ca02c" stroke-dasharray="5,3"/><text x="{:.1}" y="{:.1}">start/add</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="2,2"/><text x="{:.1}" y="{:.1}">failed action</text>"##,
        ly - 8.0,
        ly + 6.0,
        lx + 5.0,
        ly + 4.0,
        lx + 100.0,
        ly - 8.0,
        lx + 100.0,
        ly + 6.0,
        lx + 105.0,
        ly + 4.0,
        lx + 185.0,
        ly - 8.0,
        lx + 185.0,
        ly + 6.0,
        lx + 190.0,
        ly + 4.0
    );
    s.push_str("</svg>\n");
    s
}

/// The SVG inside a minimal HTML page, with `summary` (plain text) below it.
pub fn html(title: &str, svg: &str, summary: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n<body>\n{svg}<pre>{s}</pre>\n</body></html>\n",
        t = esc(title),
        s = esc(summary)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Minimal well-formedness check: tags balance, attribute values are quoted, every `&`
    /// starts a known entity, no stray `<` or `>` in text. Returns the element names seen.
    fn check_xml(doc: &str) -> Result<Vec<String>, String> {
        let mut stack: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        let mut rest = doc.trim();
        let entity_ok = |t: &str| {
            let mut r = t;
            while let Some(i) = r.find('&') {
                r = &r[i..];
                if !["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| r.starts_with(e))
                {
                    return false;
                }
                r = &r[1..];
            }
            true
        };
        while !rest.is_empty() {
            let Some(open) = rest.find('<') else {
                return Err(format!("text after the root: {rest:?}"));
            };
            let text = &rest[..open];
            if text.contains('>') || !entity_ok(text) {
                return Err(format!("bad text {text:?}"));
            }
            if !text.trim().is_empty() && stack.is_empty() {
                return Err(format!("text outside the root: {text:?}"));
            }
            rest = &rest[open + 1..];
            let close = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[..close];
            rest = &rest[close + 1..];
            if tag.contains('<') {
                return Err(format!("'<' inside tag {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                if stack.is_empty() && !rest.trim().is_empty() {
                    return Err("content after the root element".into());
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let body = tag.trim_end_matches('/');
            let name = body
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            // Attributes: name="value" pairs, quotes balanced, values escaped.
            let mut attrs = body[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("unquoted attribute in {tag:?}"))?;
                let after = &attrs[eq + 2..];
                let end = after.find('"').ok_or("unterminated attribute")?;
                if !entity_ok(&after[..end]) {
                    return Err(format!("unescaped & in {tag:?}"));
                }
                attrs = after[end + 1..].trim_start();
            }
            seen.push(name.clone());
            if !self_closing {
                stack.push(name);
            } else if stack.is_empty() {
                return Err("self-closing root".into());
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        Ok(seen)
    }

    fn point(t: f64, p50: f64, max: f64) -> Point {
        Point {
            t,
            completed: 10,
            errors: 0,
            p50_ms: p50,
            p99_ms: (p50 * 2.0).min(max),
            max_ms: max,
        }
    }

    #[test]
    fn checker_rejects_broken_xml() {
        assert!(check_xml("<a><b/></a>").is_ok());
        assert!(check_xml("<a><b></a>").is_err());
        assert!(check_xml("<a x=1/>").is_err());
        assert!(check_xml("<a>x & y</a>").is_err());
        assert!(check_xml("<a></a><b></b>").is_err());
        assert!(check_xml("<a x=\"&lt;\">&amp;</a>").is_ok());
    }

    #[test]
    fn chart_is_well_formed_with_lines_marks_and_escaped_labels() {
        let mut pts: Vec<Point> = (0..10).map(|i| point(i as f64, 0.3, 2.0)).collect();
        pts[4] = point(4.0, 40.0, 512.0);
        pts[6].completed = 0; // gap: the lines break here
        let marks = vec![
            Mark {
                t: 2.0,
                label: "remove 127.0.0.1:9101 <admin> & \"drain\"".into(),
                down: true,
                failed: false,
            },
            Mark {
                t: 4.5,
                label: "add 127.0.0.1:9101: connection refused".into(),
                down: false,
                failed: true,
            },
        ];
        let svg = chart("run <1> & co", &pts, 1.0, 10.0, &marks, &[]);
        let names = check_xml(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert_eq!(names[0], "svg");
        // Three series paths, each broken into two segments by the empty interval.
        assert_eq!(names.iter().filter(|n| *n == "path").count(), 3);
        assert_eq!(svg.matches("d=\"M").count(), 3);
        assert!(svg.contains(" M"), "gap must start a new segment");
        assert!(svg.contains("&lt;admin&gt; &amp; &quot;drain&quot;"));
        assert!(svg.contains("run &lt;1&gt; &amp; co"));
        // Log axis reaches the 512 ms max: decades up to 1000 ms.
        assert!(svg.contains(">1000 ms<"), "{svg}");
        assert!(svg.contains(">0.1 ms<"), "{svg}");
        assert_eq!(
            svg.matches("stroke-dasharray=\"2,2\" stroke-opacity")
                .count(),
            1
        );
        let page = html("t & t", &svg, "p99 < 1 ms");
        assert!(page.contains("<svg") && page.contains("p99 &lt; 1 ms"));
    }

    #[test]
    fn empty_run_still_renders() {
        let svg = chart("empty", &[], 1.0, 0.0, &[], &[]);
        check_xml(&svg).unwrap();
    }
}
