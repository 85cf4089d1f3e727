//! Churn driver: while load runs, takes upstream endpoints out and brings them back on a fixed
//! period, and records every action with its time so the report can mark it and split the
//! latency into steady-state and churn phases.
//!
//! Two independent levers are pulled:
//! - *membership*: tell the proxy an endpoint leaves or joins, through Ringway's admin API
//!   (`POST /clusters/<name>/endpoints` with `{"remove":[..]}` / `{"add":[..]}`) or through any
//!   script (`--churn-cmd`, run as `sh -c` with `CHURN_EVENT=remove|add` and
//!   `CHURN_ENDPOINT=ip:port`), so nginx (reload) and HAProxy (runtime API) can be churned too;
//! - *the endpoint itself*: stop or start it through the fleet's control API (or in process).
//!
//! `graceful`: remove from the proxy, wait the drain period, stop the endpoint; later start it
//! and add it back. `abrupt`: stop the endpoint without telling the proxy (it must find out by
//! health checks or outlier detection); later start it again.
//!
//! Each period first restores the oldest stopped endpoint when the down set is at its limit
//! (at most half of the endpoints are down at any time, rounded down), then takes the next
//! endpoint (round robin) down. The first action comes one period into the measured window,
//! so every run starts with steady state. Whatever is still down at the end is restored.
//! A failed action is printed on stderr when it happens and kept in the log with its error:
//! a churn run whose actions failed measures nothing about churn, and must say so.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::control::{short, Endpoint};

/// How endpoints leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Graceful,
    Abrupt,
}

/// One recorded step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Endpoint removed from the proxy's membership.
    Remove,
    /// Endpoint process/listener stopped.
    Stop,
    /// Endpoint started again.
    Start,
    /// Endpoint added back to the proxy's membership.
    Add,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Remove => "remove",
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Add => "add",
        }
    }
}

/// A churn action as it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When the action began, relative to the start of the measured window.
    pub at: Duration,
    pub action: Action,
    pub endpoint: SocketAddr,
    pub ok: bool,
    /// Error text when it failed; what did it otherwise (e.g. "admin 200").
    pub detail: String,
}

/// Stops and starts endpoints of the upstream fleet.
pub trait FleetControl: Send {
    fn stop(&self, port: u16) -> Result<String, String>;
    fn start(&self, port: u16) -> Result<String, String>;
}

/// The fleet's HTTP control endpoint (`ringway-loadgen upstream --control-port`).
#[derive(Debug, Clone)]
pub struct HttpFleet(pub Endpoint);

impl HttpFleet {
    fn post(&self, what: &str, port: u16) -> Result<String, String> {
        match self.0.call("POST", &format!("/{what}/{port}"), None)? {
            (200..=299, _) => Ok(format!("fleet {what}")),
            (code, body) => Err(format!("fleet control answered {code}: {}", short(&body))),
        }
    }
}

impl FleetControl for HttpFleet {
    fn stop(&self, port: u16) -> Result<String, String> {
        self.post("stop", port)
    }
    fn start(&self, port: u16) -> Result<String, String> {
        self.post("start", port)
    }
}

/// How the proxy is told about membership changes.
#[derive(Debug, Clone)]
pub enum Membership {
    /// Ringway admin API: `POST /clusters/<cluster>/endpoints`.
    Admin { admin: Endpoint, cluster: String },
    /// `sh -c SCRIPT` with `CHURN_EVENT` and `CHURN_ENDPOINT` set.
    Cmd(String),
    /// Nobody is told (abrupt mode).
    None,
}

impl Membership {
    fn change(&self, action: Action, ep: SocketAddr) -> Option<Result<String, String>> {
        let verb = action.as_str();
        match self {
            Membership::None => None,
            Membership::Admin { admin, cluster } => {
                let json = format!("{{\"{verb}\":[\"{ep}\"]}}");
                let path = format!("/clusters/{cluster}/endpoints");
                Some(match admin.call("POST", &path, Some(&json)) {
                    Ok((code @ 200..=299, _)) => Ok(format!("admin {code}")),
                    Ok((code, body)) => Err(format!(
                        "admin POST {path} {json} answered {code}: {}",
                        short(&body)
                    )),
                    Err(e) => Err(format!("admin POST {path}: {e}")),
                })
            }
            Membership::Cmd(script) => Some(run_script(script, verb, ep)),
        }
    }
}

/// Run the churn script; its exit status decides success, its stderr explains failures.
fn run_script(script: &str, verb: &str, ep: SocketAddr) -> Result<String, String> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("CHURN_EVENT", verb)
        .env("CHURN_ENDPOINT", ep.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run sh -c: {e}"))?;
    if out.status.success() {
        Ok("script ok".into())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(format!("churn script {}: {}", out.status, short(last)))
    }
}

/// Everything the driver needs.
pub struct Plan {
    pub every: Duration,
    pub mode: Mode,
    /// Graceful mode: time between removal from the proxy and stopping the endpoint.
    pub drain: Duration,
    pub endpoints: Vec<SocketAddr>,
    pub membership: Membership,
    pub fleet: Option<Box<dyn FleetControl>>,
    /// Print each action on stderr as it happens (failures are always printed).
    pub verbose: bool,
}

struct Driver {
    plan: Plan,
    origin: Instant,
    events: Vec<Event>,
}

impl Driver {
    fn record(&mut self, action: Action, ep: SocketAddr, at: Instant, r: Result<String, String>) {
        let at = at.saturating_duration_since(self.origin);
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, e),
        };
        if !ok {
            eprintln!(
                "CHURN ACTION FAILED at {:.3}s: {} {ep}: {detail}",
                at.as_secs_f64(),
                action.as_str()
            );
        } else if self.plan.verbose {
            eprintln!(
                "churn {:.3}s: {} {ep} ({detail})",
                at.as_secs_f64(),
                action.as_str()
            );
        }
        self.events.push(Event {
            at,
            action,
            endpoint: ep,
            ok,
            detail,
        });
    }

    fn membership(&mut self, action: Action, ep: SocketAddr) {
        let t = Instant::now();
        if let Some(r) = self.plan.membership.change(action, ep) {
            self.record(action, ep, t, r);
        }
    }

    fn fleet(&mut self, action: Action, ep: SocketAddr) {
        let t = Instant::now();
        let r = match (&self.plan.fleet, action) {
            (None, _) => return,
            (Some(f), Action::Stop) => f.stop(ep.port()),
            (Some(f), _) => f.start(ep.port()),
        };
        self.record(action, ep, t, r);
    }

    fn take_down(&mut self, ep: SocketAddr) {
        match self.plan.mode {
            Mode::Graceful => {
                self.membership(Action::Remove, ep);
                std::thread::sleep(self.plan.drain);
                self.fleet(Action::Stop, ep);
            }
            Mode::Abrupt => self.fleet(Action::Stop, ep),
        }
    }

    fn restore(&mut self, ep: SocketAddr) {
        self.fleet(Action::Start, ep);
        if self.plan.mode == Mode::Graceful {
            self.membership(Action::Add, ep);
        }
    }
}

/// Most endpoints that may be down at once: half, rounded down.
pub fn max_down(n: usize) -> usize {
    n / 2
}

/// Check a plan before the run starts, so a bad combination fails before any load is sent.
pub fn validate(plan: &Plan) -> Result<(), String> {
    if plan.every.is_zero() {
        return Err("--churn-every must be positive".into());
    }
    if max_down(plan.endpoints.len()) == 0 {
        return Err("churn needs at least 2 endpoints (--churn-ports) so half stay up".into());
    }
    match plan.mode {
        Mode::Abrupt if plan.fleet.is_none() => {
            Err("--churn-mode abrupt stops endpoints: it needs --fleet-control".into())
        }
        Mode::Abrupt if !matches!(plan.membership, Membership::None) => Err(
            "--churn-mode abrupt does not tell the proxy anything: drop --admin/--churn-cmd".into(),
        ),
        Mode::Graceful if matches!(plan.membership, Membership::None) => Err(
            "--churn-mode graceful needs --admin URL with --churn-cluster NAME, or --churn-cmd"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Drive churn from one period after `origin` until `end`, then restore every endpoint still
/// down. Event times are relative to `origin` (the start of the measured window).
pub fn drive(plan: Plan, origin: Instant, end: Instant) -> Vec<Event> {
    let n = plan.endpoints.len();
    let limit = max_down(n);
    let mut d = Driver {
        plan,
        origin,
        events: Vec::new(),
    };
    let mut down: VecDeque<usize> = VecDeque::new();
    let mut next = 0usize;
    let mut tick = origin + d.plan.every;
    while tick < end && limit > 0 {
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        if down.len() >= limit {
            if let Some(i) = down.pop_front() {
                let ep = d.plan.endpoints[i];
                d.restore(ep);
            }
        }
        // Next endpoint that is up, round robin (one exists: fewer than `limit` <= n/2 are down).
        while down.contains(&(next % n)) {
            next += 1;
        }
        let i = next % n;
        next += 1;
        let ep = d.plan.endpoints[i];
        d.take_down(ep);
        down.push_back(i);
        tick += d.plan.every;
    }
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    while let Some(i) = down.pop_front() {
        let ep = d.plan.endpoints[i];
        d.restore(ep);
    }
    d.events
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Fleet stand-in that logs calls and tracks which ports are up.
    #[derive(Clone, Default)]
    struct FakeFleet(Arc<Mutex<Vec<String>>>);

    impl FleetControl for FakeFleet {
        fn stop(&self, port: u16) -> Result<String, String> {
            self.0.lock().unwrap().push(format!("stop {port}"));
            Ok("fake".into())
        }
        fn start(&self, port: u16) -> Result<String, String> {
            self.0.lock().unwrap().push(format!("start {port}"));
            Ok("fake".into())
        }
    }

    fn eps(n: u16) -> Vec<SocketAddr> {
        (1..=n)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], 9100 + p)))
            .collect()
    }

    #[test]
    fn abrupt_keeps_half_up_and_restores_everything() {
        let fleet = FakeFleet::default();
        let plan = Plan {
            every: Duration::from_millis(20),
            mode: Mode::Abrupt,
            drain: Duration::ZERO,
            endpoints: eps(4),
            membership: Membership::None,
            fleet: Some(Box::new(fleet.clone())),
            verbose: false,
        };
        validate(&plan).unwrap();
        let t0 = Instant::now();
        let events = drive(plan, t0, t0 + Duration::from_millis(130));
        let log = fleet.0.lock().unwrap().clone();
        // Replay: never more than 2 of 4 down; all up at the end.
        let mut down = std::collections::BTreeSet::new();
        for l in &log {
            let (verb, port) = l.split_once(' ').unwrap();
            if verb == "stop" {
                assert!(down.insert(port.to_string()));
            } else {
                assert!(down.remove(port));
            }
            assert!(down.len() <= 2, "{log:?}");
        }
        assert!(down.is_empty(), "{log:?}");
        assert!(log.len() >= 8, "{log:?}");
        assert_eq!(&log[..3], ["stop 9101", "stop 9102", "start 9101"]);
        assert_eq!(events.len(), log.len());
        assert!(events.iter().all(|e| e.ok));
        assert!(events.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(events[0].at >= Duration::from_millis(20));
    }

    #[test]
    fn graceful_script_gets_env_and_failures_are_recorded() {
        let dir = std::env::temp_dir().join(format!("churn-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        // Succeeds for removes, fails for adds.
        let script = format!(
            "echo \"$CHURN_EVENT $CHURN_ENDPOINT\" >> {}; [ \"$CHURN_EVENT\" = remove ] || {{ echo boom >&2; exit 3; }}",
            log.display()
        );
        let plan = Plan {
            every: Duration::from_millis(30),
            mode: Mode::Graceful,
            drain: Duration::from_millis(5),
            endpoints: eps(2),
            membership: Membership::Cmd(script),
            fleet: None,
            verbose: false,
        };
        validate(&plan).unwrap();
        let t0 = Instant::now();
        let events = drive(plan, t0, t0 + Duration::from_millis(50));
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text, "remove 127.0.0.1:9101\nadd 127.0.0.1:9101\n");
        assert_eq!(events.len(), 2);
        assert!(events[0].ok && events[0].action == Action::Remove);
        assert!(!events[1].ok && events[1].action == Action::Add);
        assert!(events[1].detail.contains("boom"), "{}", events[1].detail);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn validation_rejects_bad_combinations() {
        let base = || Plan {
            every: Duration::from_secs(1),
            mode: Mode::Graceful,
            drain: Duration::ZERO,
            endpoints: eps(2),
            membership: Membership::Cmd("true".into()),
            fleet: None,
            verbose: false,
        };
        assert!(validate(&base()).is_ok());
        let mut p = base();
        p.endpoints = eps(1);
        assert!(validate(&p).unwrap_err().contains("at least 2"));
        let mut p = base();
        p.membership = Membership::None;
        assert!(validate(&p).unwrap_err().contains("--admin"));
        let mut p = base();
        p.mode = Mode::Abrupt;
        assert!(validate(&p).unwrap_err().contains("--fleet-control"));
    }
}
