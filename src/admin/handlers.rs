//! Admin endpoints: which path does what, and the small ones that need no renderer of their own.
//!
//! Paths and answers follow Envoy's admin interface so existing scripts, probes and scrapers work
//! unchanged. Endpoints that change server state only accept POST (405 otherwise, as Envoy does),
//! so a crawler or a mistyped `curl` cannot drain or stop the server.

use serde_json::{json, Value};

use super::clusters;
use super::http::{Request, Response};
use super::membership;
use super::render::{self, ServerGauges, StatsQuery};
use crate::logging::{self, Level};
use crate::server::ServerState;

/// What the server does after the response has been written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    Shutdown,
}

/// (path, mutates server state, help).
pub const ENDPOINTS: &[(&str, bool, &str)] = &[
    ("/", false, "Admin home page (this list)"),
    ("/clusters", false, "upstream cluster status (?format=json)"),
    ("/config_dump", false, "dump current configuration"),
    (
        "/drain_listeners",
        true,
        "drain listeners: stop accepting, close idle connections",
    ),
    (
        "/healthcheck/fail",
        true,
        "cause the server to fail health checks",
    ),
    (
        "/healthcheck/ok",
        true,
        "cause the server to pass health checks",
    ),
    (
        "/logging",
        true,
        "query/change logging levels (?level=<level>)",
    ),
    ("/quitquitquit", true, "exit the server"),
    (
        "/ready",
        false,
        "print server state, return 200 if LIVE, otherwise return 503",
    ),
    (
        "/server_info",
        false,
        "print server version/status information",
    ),
    (
        "/stats",
        false,
        "print server stats (?filter=<substring>, ?usedonly, ?format=json|prometheus)",
    ),
    (
        "/stats/prometheus",
        false,
        "print server stats in prometheus format",
    ),
];

fn endpoint_list() -> String {
    let mut s = String::from("admin commands are:\n");
    for (path, _, help) in ENDPOINTS {
        s.push_str("  ");
        s.push_str(path);
        s.push_str(": ");
        s.push_str(help);
        s.push('\n');
    }
    s.push_str("  /clusters/<name>/endpoints: list (GET) or change (POST {\"set\"|\"add\"|\"remove\": [\"ip:port\", ...]}) a cluster's endpoints\n");
    s
}

/// Answers one admin request.
pub fn handle(state: &ServerState, req: &Request) -> (Response, After) {
    if let Some(name) = membership::route(&req.path) {
        return (membership::handle(state, req, name), After::Nothing);
    }
    let Some(&(path, mutates, _)) = ENDPOINTS.iter().find(|(p, _, _)| *p == req.path) else {
        return (
            Response::text(404, format!("invalid path. {}", endpoint_list())),
            After::Nothing,
        );
    };
    if mutates && req.method != "POST" {
        return (
            Response::text(
                405,
                format!("Method {} not allowed, POST required.\n", req.method),
            ),
            After::Nothing,
        );
    }
    let ok = || Response::text(200, "OK\n");
    let resp = match path {
        "/" => Response::text(200, endpoint_list()),
        "/ready" => {
            if state.lifecycle.is_draining() {
                Response::text(503, "DRAINING\n")
            } else {
                Response::text(200, "LIVE\n")
            }
        }
        "/server_info" => Response::json(200, &server_info(state)),
        "/stats" => stats(state, req, req.param("format")),
        "/stats/prometheus" => stats(state, req, Some("prometheus")),
        "/clusters" => {
            let snap = state.membership.current();
            if req.param("format") == Some("json") {
                Response::json(200, &clusters::json(&state.config, &snap))
            } else {
                Response::text(200, clusters::text(&state.config, &snap))
            }
        }
        "/config_dump" => Response::json(200, &config_dump(state)),
        "/logging" => logging_endpoint(req),
        "/healthcheck/fail" => {
            state.lifecycle.set_health_failed(true);
            ok()
        }
        "/healthcheck/ok" => {
            state.lifecycle.set_health_failed(false);
            ok()
        }
        "/drain_listeners" => match drain_listeners_params(req) {
            Ok(()) => {
                state.lifecycle.start_draining();
                ok()
            }
            Err(refusal) => refusal,
        },
        "/quitquitquit" => return (ok(), After::Shutdown),
        _ => Response::text(404, format!("invalid path. {}", endpoint_list())),
    };
    (resp, After::Nothing)
}

pub fn server_gauges(state: &ServerState) -> ServerGauges {
    let draining = state.lifecycle.is_draining();
    ServerGauges {
        live: !draining,
        state: u64::from(draining),
        uptime_secs: state.stats.started.elapsed().as_secs(),
        concurrency: state.info.concurrency as u64,
    }
}

fn stats(state: &ServerState, req: &Request, format: Option<&str>) -> Response {
    let q = StatsQuery {
        filter: req
            .param("filter")
            .filter(|f| !f.is_empty())
            .map(str::to_owned),
        used_only: req.has_param("usedonly"),
    };
    let snap = render::collect(&state.stats, server_gauges(state), q.filter.as_deref());
    match format {
        None | Some("text") => Response::text(200, render::text(&snap, &q)),
        Some("json") => Response::json(200, &render::json(&snap, &q)),
        Some("prometheus") => Response::text(200, render::prometheus(&snap, &q)),
        Some(other) => Response::text(
            400,
            format!("unsupported stats format '{other}': use text, json or prometheus\n"),
        ),
    }
}

fn server_info(state: &ServerState) -> Value {
    let info = &state.info;
    let uptime = format!("{}s", state.stats.started.elapsed().as_secs());
    let mut options = serde_json::Map::new();
    options.insert("concurrency".into(), json!(info.concurrency));
    options.insert("io_driver".into(), json!(info.io_driver));
    for (flag, value) in &info.options {
        options.insert((*flag).to_owned(), json!(value));
    }
    json!({
        "version": info.version,
        "state": state.lifecycle.state_name(),
        "hot_restart_version": "disabled",
        "command_line_options": options,
        "node": {},
        "uptime_current_epoch": uptime,
        "uptime_all_epochs": uptime,
        "concurrency": info.concurrency,
        "io_driver": info.io_driver,
        "command_line": info.command_line,
    })
}

fn config_dump(state: &ServerState) -> Value {
    json!({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
        "bootstrap": state.raw_config,
    }]})
}

/// Envoy's `/drain_listeners` parameters: `inboundonly` changes nothing here (every Ringway
/// listener is inbound); `graceful` (a drain period before the listeners close) and `skip_exit`
/// are not implemented and are refused rather than ignored.
fn drain_listeners_params(req: &Request) -> Result<(), Response> {
    for (k, _) in &req.query {
        match k.as_str() {
            "inboundonly" => {}
            "graceful" | "skip_exit" => {
                return Err(Response::text(
                    400,
                    format!(
                        "error: /drain_listeners?{k} is not supported by Ringway (listeners close at once and connections drain)\n"
                    ),
                ))
            }
            _ => {
                return Err(Response::text(
                    400,
                    format!("error: unknown parameter '{k}' (/drain_listeners takes inboundonly)\n"),
                ))
            }
        }
    }
    Ok(())
}

/// The single logger's name in `/logging` output (Ringway has one global level).
const LOGGER: &str = "ringway";

fn logging_endpoint(req: &Request) -> Response {
    let valid: Vec<&str> = Level::ALL.iter().map(|l| l.name()).collect();
    for (k, v) in &req.query {
        // `?level=x` sets every logger, `?ringway=x` names the one logger; both mean the same.
        if k != "level" && k != LOGGER {
            return Response::text(
                400,
                format!(
                    "error: unknown logger '{k}'\nusage: /logging?level=<level> or /logging?{LOGGER}=<level>\nlevels: {}\n",
                    valid.join(", ")
                ),
            );
        }
        match Level::parse(v) {
            Some(l) => logging::set_level(l),
            None => {
                return Response::text(
                    400,
                    format!(
                        "error: unknown logger level '{v}'\nvalid levels: {}\n",
                        valid.join(", ")
                    ),
                )
            }
        }
    }
    Response::text(
        200,
        format!("active loggers:\n  {LOGGER}: {}\n", logging::level().name()),
    )
}
