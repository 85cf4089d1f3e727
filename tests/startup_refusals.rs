//! Start-up refusals: inputs that must stop the process with a clear message before it serves
//! (a listener port someone else holds, an absurd `--cpu-set`, a pathologically nested config).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// How long a refused start-up may take before the test calls it a hang.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// Runs ringway on `yaml` with `extra` arguments and waits for it to exit on its own; returns the
/// status and stderr. A process still running at the deadline is killed and the test fails: every
/// case here must be refused, not served.
fn run_to_exit(yaml: &str, extra: &[&str]) -> (ExitStatus, String) {
    let dir = support::TempDir::new("refusal");
    let config = dir.join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stderr_path = dir.join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut child = Command::new(support::ringway::binary())
        .arg("-c")
        .arg(&config)
        .args(["--no-pin", "-l", "warning", "--concurrency", "2"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + EXIT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringway {extra:?} still running after {EXIT_DEADLINE:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(&stderr_path).unwrap())
}

fn assert_refused_for_listener(status: ExitStatus, stderr: &str, port: u16) {
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    let want = format!("listener 'listener_0': cannot bind 127.0.0.1:{port}");
    assert!(stderr.contains(&want), "no '{want}' in stderr:\n{stderr}");
    assert!(
        stderr.contains("already in use by another socket"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn a_second_ringway_on_the_same_listener_port_is_refused() {
    let u = TestUpstream::start();
    let first = ConfigBuilder::single(&[u.port]);
    let rw = Ringway::start(&first.render());
    // Same listener port, its own admin port: only the listener conflicts.
    let mut second = first.clone();
    second.admin_port = free_port();
    let (status, stderr) = run_to_exit(&second.render(), &[]);
    assert_refused_for_listener(status, &stderr, first.listen_port);
    // The first one still owns all the traffic.
    let r = http_get(rw.listen_port, "/x");
    assert_eq!(r.status, 200, "{}", rw.diagnostics());
}

#[test]
fn a_port_held_with_so_reuseport_by_another_process_is_refused() {
    use socket2::{Domain, Socket, Type};
    let holder = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    holder.set_reuse_address(true).unwrap();
    holder.set_reuse_port(true).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    holder.bind(&any.into()).unwrap();
    holder.listen(16).unwrap();
    let holder: TcpListener = holder.into();
    let port = holder.local_addr().unwrap().port();

    let mut cfg = ConfigBuilder::single(&[free_port()]);
    cfg.listen_port = port;
    let (status, stderr) = run_to_exit(&cfg.render(), &[]);
    assert_refused_for_listener(status, &stderr, port);
}

#[test]
fn a_taken_admin_port_is_refused_naming_admin() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let mut cfg = ConfigBuilder::single(&[free_port()]);
    cfg.admin_port = port;
    let (status, stderr) = run_to_exit(&cfg.render(), &[]);
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    let want = format!("admin: cannot bind 127.0.0.1:{port}");
    assert!(stderr.contains(&want), "no '{want}' in stderr:\n{stderr}");
}

#[test]
fn a_huge_cpu_set_range_is_refused_promptly() {
    let cfg = ConfigBuilder::single(&[free_port()]).render();
    let (status, stderr) = run_to_exit(&cfg, &["--cpu-set", "0-18446744073709551615"]);
    assert_eq!(status.code(), Some(1), "stderr:\n{stderr}");
    assert!(
        stderr.contains(
            "--cpu-set: CPU 18446744073709551615 in '0-18446744073709551615' is out of range"
        ),
        "stderr:\n{stderr}"
    );
}

/// libyaml scans flow nesting in time quadratic in the depth (minutes for this file before the
/// guard); the guard refuses it before the parser runs, naming where.
#[test]
fn a_config_nested_100k_deep_is_refused_by_validate() {
    let depth = 100_000;
    let mut yaml = ConfigBuilder::single(&[free_port()]).render();
    let admin_at = yaml.rfind("admin:\n").unwrap();
    yaml.truncate(admin_at);
    yaml.push_str(&format!(
        "admin: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    ));
    let lines = yaml.lines().count();
    let out = Ringway::validate(&yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let want = format!(
        "error: (document): nesting deeper than 128 levels at line {lines} column 136 (Envoy configurations need far fewer)"
    );
    assert_eq!(stderr.trim_end(), want);
}
