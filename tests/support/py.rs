//! The Python side of the HTTP/2 and gRPC tests: runs the scripts in `tests/py/` (abuse, liveness,
//! grpc client, raw h2 requests) and keeps the Python servers (`grpc_server.py`, `h2_server.py`)
//! alive for a test. Every script prints one JSON line, so results are parsed with serde_json and
//! asserted field by field in Rust; a script's stderr is kept for failure messages.
//!
//! The interpreter is `$RINGWAY_PYTHON`, else `/usr/bin/python3`: `tests/run` installs h2,
//! hyperframe and grpcio for the system Python, which a pyenv or venv `python3` earlier on PATH
//! would not see. Servers run in their own process group and are killed and reaped on drop.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::TempDir;

/// The Python interpreter the scripts run under.
pub fn python() -> PathBuf {
    match std::env::var_os("RINGWAY_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/usr/bin/python3"),
    }
}

/// Path of `tests/py/<name>`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("py")
        .join(name)
}

fn command(name: &str, args: &[&str]) -> Command {
    let py = python();
    assert!(
        py.exists(),
        "{} not found; tests/run installs python3 with h2, hyperframe and grpcio (or set RINGWAY_PYTHON)",
        py.display()
    );
    let mut cmd = Command::new(&py);
    cmd.arg(script(name)).args(args);
    cmd
}

/// What one script run produced.
#[derive(Debug)]
pub struct PyRun {
    pub status: ExitStatus,
    /// The JSON line the script printed (`Value::Null` if it printed none).
    pub json: Value,
    pub stdout: String,
    pub stderr: String,
}

impl PyRun {
    /// A field of the JSON result, `Value::Null` when absent.
    pub fn get(&self, key: &str) -> &Value {
        self.json.get(key).unwrap_or(&Value::Null)
    }

    /// For assertion messages: the whole output.
    pub fn explain(&self) -> String {
        format!(
            "exit {}\nstdout: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        )
    }
}

fn parse_last_json(stdout: &str) -> Value {
    stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .unwrap_or(Value::Null)
}

/// Runs `tests/py/<name> args...` to completion.
pub fn run(name: &str, args: &[&str]) -> PyRun {
    let out = command(name, args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {name}: {e}", python().display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    PyRun {
        status: out.status,
        json: parse_last_json(&stdout),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a script and asserts it exited 0 and printed a JSON line.
pub fn run_ok(name: &str, args: &[&str]) -> PyRun {
    let r = run(name, args);
    assert!(
        r.status.success() && !r.json.is_null(),
        "{name} {args:?} failed: {}",
        r.explain()
    );
    r
}

/// A long-running Python process: a server (which prints `{"port", "pid"}` when ready) or a
/// background client that ends when its stdin closes (`h2_liveness.py`).
pub struct PyProcess {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
    dir: TempDir,
    name: String,
    /// From the ready line of a server; 0 for clients.
    pub port: u16,
}

impl PyProcess {
    fn spawn(name: &str, args: &[&str]) -> PyProcess {
        let dir = TempDir::new("py");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("create py stderr log");
        let mut child = command(name, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stdout = child.stdout.take().map(BufReader::new);
        let stdin = child.stdin.take();
        PyProcess {
            child: Some(child),
            stdin,
            stdout,
            dir,
            name: name.to_string(),
            port: 0,
        }
    }

    /// Starts a server script with port 0 and waits for its ready line.
    pub fn server(name: &str) -> PyProcess {
        let mut p = Self::spawn(name, &["0"]);
        let mut line = String::new();
        let read = p
            .stdout
            .as_mut()
            .map(|r| r.read_line(&mut line))
            .unwrap_or(Ok(0));
        let v: Value = serde_json::from_str(line.trim()).unwrap_or(Value::Null);
        match (read, v.get("port").and_then(Value::as_u64)) {
            (Ok(n), Some(port)) if n > 0 => {
                p.port = u16::try_from(port).expect("port fits u16");
            }
            _ => panic!(
                "{name} did not print its ready line (got {line:?}):\n{}",
                p.stderr_text()
            ),
        }
        p
    }

    /// `grpc_server.py` on a free port.
    pub fn grpc_server() -> PyProcess {
        Self::server("grpc_server.py")
    }

    /// `h2_server.py` (h2c origin) on a free port.
    pub fn h2_server() -> PyProcess {
        Self::server("h2_server.py")
    }

    /// Starts a client that runs until `finish` closes its stdin.
    pub fn background(name: &str, args: &[&str]) -> PyProcess {
        Self::spawn(name, args)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Closes stdin (the client's signal to stop), waits for it and returns its result.
    pub fn finish(mut self) -> PyRun {
        drop(self.stdin.take());
        let mut stdout = String::new();
        if let Some(mut r) = self.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut r, &mut stdout);
        }
        let status = self
            .child
            .take()
            .map(|mut c| c.wait().expect("wait for python client"))
            .expect("python client already reaped");
        PyRun {
            status,
            json: parse_last_json(&stdout),
            stdout,
            stderr: self.stderr_text(),
        }
    }

    /// Writes a line to the process's stdin (unused by the current scripts, kept for symmetry
    /// with `finish`).
    pub fn send_line(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}");
        }
    }
}

impl Drop for PyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- {} stderr ---\n{}", self.name, self.stderr_text());
        }
        if let Some(mut c) = self.child.take() {
            let pgid = format!("-{}", c.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &pgid])
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// VmRSS of a process in KiB (None once it is gone).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Runs an external tool (h2load, nghttp), killing it if it outlives `timeout`: returns
/// (exited successfully, stdout, stderr).
pub fn tool(bin: &str, args: &[&str], timeout: Duration) -> (bool, String, String) {
    use std::io::Read;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {bin} ({e}); tests/run installs it (nghttp2-client)")
        });
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut s);
            }
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break Some(st);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let mut stderr = err.join().unwrap_or_default();
    if status.is_none() {
        stderr.push_str(&format!("\n({bin} killed after {timeout:?})"));
    }
    (status.is_some_and(|s| s.success()), stdout, stderr)
}
