//! The `ringway` process under test. `Ringway::start(yaml)` writes the config to a temp file, runs
//! the binary with test-friendly flags, and returns once the admin `/ready` answers 200. Stdout and
//! stderr go to files that are printed when a test fails, so a failure explains itself. Drop kills
//! the whole process group and reaps it: no test leaves a proxy behind.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use super::formats::parse_stats_text;
use super::raw::RawConn;
use super::TempDir;

/// How long start-up may take before the test fails.
pub const START_DEADLINE: Duration = Duration::from_secs(10);

pub struct Ringway {
    child: Child,
    exit: Option<ExitStatus>,
    /// Port of the first listener in the config.
    pub listen_port: u16,
    /// Port of the admin listener.
    pub admin_port: u16,
    pub config_path: PathBuf,
    dir: TempDir,
    /// The breakers' `remaining_*` gauges when the proxy became ready (the leak check's zero).
    baseline: BTreeMap<String, u64>,
    /// Why this test opts out of the leak check (None: checked).
    leak_check_off: Option<&'static str>,
}

/// The binary under test: `$RINGWAY_BIN` if set, else the one Cargo built for this test run.
pub fn binary() -> PathBuf {
    match std::env::var_os("RINGWAY_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_ringway")),
    }
}

/// Extracts a `socket_address.port_value` from a parsed config.
fn port_at(v: &serde_yaml_ng::Value, path: &[&str]) -> Option<u16> {
    let mut cur = v;
    for key in path {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i)?,
            Err(_) => cur.get(*key)?,
        };
    }
    cur.as_u64().and_then(|p| u16::try_from(p).ok())
}

impl Ringway {
    /// Starts ringway on `yaml` with `--concurrency 2 --no-pin -l warning`.
    pub fn start(yaml: &str) -> Ringway {
        Self::start_with_args(yaml, &[])
    }

    /// Like `start`, with extra command-line arguments (`--concurrency N` replaces the default 2).
    pub fn start_with_args(yaml: &str, extra: &[&str]) -> Ringway {
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml)
            .unwrap_or_else(|e| panic!("test config is not YAML ({e}):\n{yaml}"));
        let admin_port = port_at(
            &parsed,
            &["admin", "address", "socket_address", "port_value"],
        )
        .unwrap_or_else(|| {
            panic!("test config has no admin.address.socket_address.port_value:\n{yaml}")
        });
        let listen_port = port_at(
            &parsed,
            &[
                "static_resources",
                "listeners",
                "0",
                "address",
                "socket_address",
                "port_value",
            ],
        )
        .unwrap_or(0);
        let dir = TempDir::new("ringway");
        let config_path = dir.join("config.yaml");
        std::fs::write(&config_path, yaml).expect("write ringway config");
        let stdout = std::fs::File::create(dir.join("stdout.log")).expect("create stdout log");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create stderr log");
        let bin = binary();
        let mut cmd = Command::new(&bin);
        cmd.arg("-c")
            .arg(&config_path)
            .args(["--no-pin", "-l", "warning"]);
        // Two workers unless the test chose (clap refuses a repeated --concurrency).
        if !extra.contains(&"--concurrency") {
            cmd.args(["--concurrency", "2"]);
        }
        // The io_uring driver is the default; a CI host without io_uring sets this to `auto`/`epoll`.
        if let Ok(driver) = std::env::var("RINGWAY_TEST_IO_DRIVER") {
            if !driver.is_empty() {
                cmd.args(["--io-driver", &driver]);
            }
        }
        cmd.args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            // Own process group, so Drop can kill anything it spawned too.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut rw = Ringway {
            child,
            exit: None,
            listen_port,
            admin_port,
            config_path,
            dir,
            baseline: BTreeMap::new(),
            leak_check_off: None,
        };
        rw.wait_ready();
        if let Ok(stats) = rw.try_stats() {
            rw.baseline = stats
                .into_iter()
                .filter(|(k, _)| k.contains(".circuit_breakers.default.remaining_"))
                .collect();
        }
        rw
    }

    /// Skips the leak check at drop for this instance; `why` must say what legitimately stays
    /// held when the test ends (it shows in the source, not at run time).
    pub fn skip_leak_check(&mut self, why: &'static str) {
        self.leak_check_off = Some(why);
    }

    fn try_stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let (code, body) = self.try_admin("GET", "/stats").map_err(|e| e.to_string())?;
        if code != 200 {
            return Err(format!("/stats answered {code}"));
        }
        parse_stats_text(&body)
    }

    /// What a quiescent proxy must show: nothing admitted, pending or retrying, every breaker
    /// back where it started, and every open upstream connection an idle pooled one. Empty when
    /// all holds.
    pub fn leaks(&self, stats: &BTreeMap<String, u64>) -> Vec<String> {
        let mut problems = Vec::new();
        for (k, v) in stats {
            let must_be_zero = k.ends_with(".upstream_rq_active")
                || k.ends_with(".upstream_rq_pending_active")
                || (k.starts_with("http.") && k.ends_with(".downstream_rq_active"));
            if must_be_zero && *v != 0 {
                problems.push(format!("{k} = {v}, expected 0"));
            }
            if let Some(start) = self.baseline.get(k) {
                if !k.ends_with(".remaining_cx") && v != start {
                    problems.push(format!("{k} = {v}, was {start} at start"));
                }
            }
            if let Some(cluster) = k
                .strip_prefix("cluster.")
                .and_then(|r| r.strip_suffix(".upstream_cx_active"))
            {
                let idle = stats
                    .get(&format!("cluster.{cluster}.upstream_cx_idle"))
                    .copied()
                    .unwrap_or(0);
                if *v != idle {
                    problems.push(format!(
                        "{k} = {v} but only {idle} idle pooled: connections held by no exchange"
                    ));
                }
                let rem_key = format!("cluster.{cluster}.circuit_breakers.default.remaining_cx");
                if let (Some(rem), Some(start)) = (stats.get(&rem_key), self.baseline.get(&rem_key))
                {
                    if rem + idle != *start {
                        problems.push(format!(
                            "{rem_key} = {rem} with {idle} idle connections, was {start} at start: \
                             max_connections permits held by no connection"
                        ));
                    }
                }
            }
        }
        problems
    }

    /// Waits (up to 10 s) for the proxy to be quiescent with nothing leaked; the problems seen
    /// last otherwise. `Ok` when the process is gone or its admin no longer answers.
    pub fn leak_check(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Ok(stats) = self.try_stats() else {
                return Ok(());
            };
            let problems = self.leaks(&stats);
            if problems.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(problems.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        let mut last: String;
        loop {
            if let Some(status) = self.try_exit() {
                // Drop prints config, stderr and stdout after this message.
                panic!("ringway exited during start-up ({status}) before /ready answered 200");
            }
            match self.try_admin("GET", "/ready") {
                Ok((200, _)) => return,
                Ok((code, body)) => last = format!("/ready answered {code}: {body}"),
                Err(e) => last = format!("admin 127.0.0.1:{}: {e}", self.admin_port),
            }
            if Instant::now() >= deadline {
                panic!("ringway not ready within {START_DEADLINE:?} (last: {last})");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Runs `ringway --mode validate` on `yaml` and returns its output (no process is left).
    pub fn validate(yaml: &str) -> Output {
        let dir = TempDir::new("validate");
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).expect("write config to validate");
        let bin = binary();
        Command::new(&bin)
            .arg("-c")
            .arg(&path)
            .args(["--mode", "validate"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {} --mode validate: {e}", bin.display()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<listen_port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listen_port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    fn try_admin(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut c = RawConn::connect(self.admin_port)?;
        c.timeout = Duration::from_secs(5);
        let req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
        c.send(req.as_bytes())?;
        let r = c.read_response()?;
        Ok((r.status, r.body_text()))
    }

    /// GET on the admin listener: (status, body). Panics (with ringway's stderr) if unreachable.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        self.try_admin("GET", path)
            .unwrap_or_else(|e| panic!("admin GET {path}: {e}"))
    }

    /// POST on the admin listener: (status, body).
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        self.try_admin("POST", path)
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"))
    }

    /// Any method on the admin listener with a request body: (status, body).
    pub fn admin_request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let r = super::raw::http_request(self.admin_port, method, path, body.as_bytes())
            .unwrap_or_else(|e| panic!("admin {method} {path}: {e}"));
        (r.status, r.body_text())
    }

    /// Like `admin_get`, without panicking (for polling during shutdown).
    pub fn try_admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.try_admin("GET", path)
    }

    /// Every integer counter/gauge from `/stats`.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let (code, body) = self.admin_get("/stats");
        assert_eq!(code, 200, "/stats answered {code}: {body}");
        parse_stats_text(&body)
            .unwrap_or_else(|e| panic!("/stats output does not parse: {e}\n{body}"))
    }

    /// One stat from `/stats`; panics listing the stats that do exist when it is missing.
    pub fn stat(&self, name: &str) -> u64 {
        let all = self.stats();
        match all.get(name) {
            Some(v) => *v,
            None => {
                let prefix = name.rsplit_once('.').map(|(p, _)| p).unwrap_or(name);
                let near: Vec<_> = all.keys().filter(|k| k.starts_with(prefix)).collect();
                panic!("stat {name} missing from /stats; stats under {prefix}: {near:?}")
            }
        }
    }

    /// Asserts that `stat(name)` reaches `expected`, polling for up to 5 s: counters are written
    /// when a request ends, which can be a moment after the client has its response.
    pub fn wait_stat(&self, name: &str, expected: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.stats().get(name).copied();
            if v == Some(expected) {
                return;
            }
            if Instant::now() >= deadline {
                let seen = self.stat(name); // panics listing near names if missing
                panic!("stat {name} is {seen}, expected {expected}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(st.success(), "kill -s {sig} {} failed", self.pid());
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.exit = Some(s);
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for the process to exit; returns its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default()
    }

    /// Config, stderr and stdout, for failure messages.
    pub fn diagnostics(&self) -> String {
        let cfg = std::fs::read_to_string(&self.config_path).unwrap_or_default();
        format!(
            "--- ringway config ({}) ---\n{cfg}\n--- ringway stderr ---\n{}\n--- ringway stdout ---\n{}",
            self.config_path.display(),
            self.stderr_text(),
            self.stdout_text()
        )
    }

    /// Directory holding this instance's config and logs (for access-log files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Ringway {
    fn drop(&mut self) {
        // The leak check runs on every instance a passing test leaves running: admission
        // gauges back to zero, breakers where they started, no connection held by nobody.
        let mut leaked = None;
        if !std::thread::panicking() && self.leak_check_off.is_none() && self.try_exit().is_none() {
            leaked = self.leak_check().err();
        }
        if std::thread::panicking() || leaked.is_some() {
            eprintln!("{}", self.diagnostics());
        }
        if self.try_exit().is_none() {
            let pgid = format!("-{}", self.child.id());
            let killed = Command::new("kill")
                .args(["-s", "KILL", "--", &pgid])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !killed {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if let Some(problems) = leaked {
            panic!("leak check failed after the test (waited 10 s for quiescence):\n{problems}");
        }
    }
}
