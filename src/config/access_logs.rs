//! `access_log[]` entries (of the HTTP connection manager and of admin): file, stdout and stderr
//! loggers with Envoy's text format strings.
//!
//! The logger is chosen by `typed_config`'s `@type`, as Envoy does; a format string is parsed
//! here (by `access_log::Format::parse`) so a bad one fails the load instead of the first request.

use serde_yaml_ng::Value;
use std::path::PathBuf;

use super::model::AccessLog;
use super::walk::*;

pub(crate) const FILE_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR_LOG_TYPE: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

const ACCESS_LOG: Message = Message {
    supported: &["name", "typed_config"],
    unsupported: &["filter"],
};

const FILE_ACCESS_LOG: Message = Message {
    supported: &["@type", "path", "log_format", "format"],
    unsupported: &["json_format", "typed_json_format"],
};

const STREAM_ACCESS_LOG: Message = Message {
    supported: &["@type", "log_format"],
    unsupported: &[],
};

const LOG_FORMAT: Message = Message {
    supported: &["text_format", "text_format_source"],
    unsupported: &[
        "json_format",
        "omit_empty_values",
        "content_type",
        "formatters",
        "json_format_options",
    ],
};

const TEXT_SOURCE: Message = Message {
    supported: &["inline_string"],
    unsupported: &[
        "filename",
        "inline_bytes",
        "environment_variable",
        "watched_directory",
    ],
};

/// One `access_log` entry. The logger is picked by `typed_config`'s type as Envoy does; `name`
/// alone selects stdout/stderr loggers that need no configuration.
pub(crate) fn access_log(cx: &mut Cx, path: &str, v: &Value) -> Option<AccessLog> {
    let o = obj(cx, path, v, &ACCESS_LOG)?;
    let name = match o.get("name") {
        Some(n) => string(cx, &o.at("name"), n)?,
        None => String::new(),
    };
    let tp = o.at("typed_config");
    let (ty, tc) = match o.get("typed_config") {
        Some(tc) => match type_url(tc) {
            Some(t) => (t, Some(tc)),
            None => {
                // `typed` reports the missing or malformed "@type" at its own path.
                typed(cx, &tp, tc, FILE_LOG_TYPE, &FILE_ACCESS_LOG);
                return None;
            }
        },
        None => (
            match name.as_str() {
                "envoy.access_loggers.stdout" => STDOUT_LOG_TYPE,
                "envoy.access_loggers.stderr" => STDERR_LOG_TYPE,
                _ => "",
            },
            None,
        ),
    };
    let (path_buf, format) = match ty {
        FILE_LOG_TYPE => {
            let t = typed(cx, &tp, tc?, FILE_LOG_TYPE, &FILE_ACCESS_LOG)?;
            let file = t
                .req(cx, "path")
                .and_then(|p| nonempty_string(cx, &t.at("path"), p));
            let format = match (t.get("format"), t.get("log_format")) {
                (Some(_), Some(_)) => {
                    cx.err(&tp, "format and log_format are mutually exclusive");
                    return None;
                }
                (Some(f), None) => Some((string(cx, &t.at("format"), f)?, t.at("format"))),
                (None, Some(lf)) => log_format(cx, &t.at("log_format"), lf)?,
                (None, None) => None,
            };
            (PathBuf::from(file?), format)
        }
        STDOUT_LOG_TYPE | STDERR_LOG_TYPE => {
            let format = match tc {
                Some(tc) => {
                    let t = typed(cx, &tp, tc, ty, &STREAM_ACCESS_LOG)?;
                    match t.get("log_format") {
                        Some(lf) => log_format(cx, &t.at("log_format"), lf)?,
                        None => None,
                    }
                }
                None => None,
            };
            let dev = if ty == STDOUT_LOG_TYPE {
                "/dev/stdout"
            } else {
                "/dev/stderr"
            };
            (PathBuf::from(dev), format)
        }
        _ if tc.is_none() => {
            cx.err(
                &tp,
                "required field is missing (a file access log needs its path)",
            );
            return None;
        }
        other => {
            let what = if other.is_empty() {
                name.as_str()
            } else {
                other
            };
            cx.err(
                &tp,
                format!("access logger {what} is not supported by Ringway (only file, stdout and stderr loggers)"),
            );
            return None;
        }
    };
    if let Some((f, at)) = &format {
        // Checked here so a bad format string fails the load, not the first logged request.
        if let Err(e) = crate::access_log::Format::parse(f) {
            cx.err(at, format!("invalid access log format: {e}"));
            return None;
        }
    }
    Some(AccessLog {
        path: path_buf,
        format: format.map(|(f, _)| f),
    })
}

/// `log_format` (SubstitutionFormatString): a text format, inline or via `text_format_source`.
/// Returns the format and the path it was read from, or `Some(None)` for an empty object
/// (Envoy's default format).
fn log_format(cx: &mut Cx, path: &str, v: &Value) -> Option<Option<(String, String)>> {
    let o = obj(cx, path, v, &LOG_FORMAT)?;
    let s = match (o.get("text_format"), o.get("text_format_source")) {
        (Some(_), Some(_)) => {
            cx.err(
                path,
                "text_format and text_format_source are mutually exclusive",
            );
            return None;
        }
        (Some(t), None) => (string(cx, &o.at("text_format"), t)?, o.at("text_format")),
        (None, Some(src)) => {
            let sp = o.at("text_format_source");
            let src = obj(cx, &sp, src, &TEXT_SOURCE)?;
            let s = src.req(cx, "inline_string")?;
            let at = src.at("inline_string");
            (string(cx, &at, s)?, at)
        }
        (None, None) => return Some(None),
    };
    Some(Some(s))
}
