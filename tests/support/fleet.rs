//! The load generator as a test fixture: locating (building on demand) the `ringway-loadgen`
//! binary, running its upstream fleet as a child process with a control endpoint, and running
//! a load with `--json` so a test can assert on the report.
//!
//! Kept apart from `support/mod.rs` (and included with `#[path]`) because only the tests that
//! drive the load generator need it, and building the binary costs a cargo invocation.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Builds (if needed) and locates the load generator, once per test binary: `$LOADGEN_BIN`,
/// else `target/<profile>/ringway-loadgen` from `cargo build -p ringway-loadgen` (a package's
/// tests cannot name another package's binary through `CARGO_BIN_EXE_*`).
pub fn loadgen() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("LOADGEN_BIN") {
            return PathBuf::from(p);
        }
        // This test runs from target/<profile>/deps/; the binary lands in target/<profile>/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("test binary lives in target/<profile>/deps");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "ringway-loadgen",
            "--bin",
            "ringway-loadgen",
        ]);
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build for ringway-loadgen");
        assert!(
            out.status.success(),
            "cargo build -p ringway-loadgen failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = profile_dir.join("ringway-loadgen");
        assert!(bin.is_file(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// `ringway-loadgen upstream` as a child process, killed on drop.
pub struct FleetProc {
    child: Child,
    pub ports: Vec<u16>,
    pub control: u16,
}

impl FleetProc {
    /// Serves 64-byte 200s on `ports`, with the control endpoint on `control`; returns once
    /// the control endpoint answers.
    pub fn start(ports: &[u16], control: u16) -> FleetProc {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        let child = Command::new(loadgen())
            .args([
                "upstream",
                "--ports",
                &list.join(","),
                "--response-bytes",
                "64",
            ])
            .args(["--control-port", &control.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the fleet");
        let fleet = FleetProc {
            child,
            ports: ports.to_vec(),
            control,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while http(control, "GET", "/status").is_err() {
            assert!(Instant::now() < deadline, "fleet control never came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        fleet
    }

    /// `--fleet-control` URL.
    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control)
    }

    /// `--churn-ports` list.
    pub fn port_list(&self) -> String {
        let list: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        list.join(",")
    }

    /// True when every port of the fleet is serving (the churn driver restores all at the end).
    pub fn all_up(&self) -> bool {
        let Ok((200, body)) = http(self.control, "GET", "/status") else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) else {
            return false;
        };
        v["ports"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["up"] == true))
    }
}

impl Drop for FleetProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit status and both streams of a finished process, for failure messages.
pub fn describe(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs the load generator with `args` and `--json <dir>/run.json`; returns the process output
/// and the parsed report. Panics (with both streams) when it fails or writes no JSON.
pub fn run_load(dir: &Path, args: &[String]) -> (Output, serde_json::Value) {
    let json = dir.join("run.json");
    let out = Command::new(loadgen())
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run ringway-loadgen");
    assert!(out.status.success(), "loadgen failed: {}", describe(&out));
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", describe(&out)));
    let v = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("bad JSON report ({e}): {text}\n{}", describe(&out)));
    (out, v)
}
