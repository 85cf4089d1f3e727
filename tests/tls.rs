//! TLS against real clients and servers: curl and `openssl s_client` in front of Ringway, nginx
//! with TLS behind it, certificates from a per-test CA (rcgen). Covers termination, SNI, ALPN,
//! the handshake timeout, session resumption, certificate reload under load, origination with
//! verification on (and explicitly off), TLS health checks, and the `ssl.*` stats.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::certs::{downstream_tls, upstream_tls, TestCa};
use support::formats::{parse_access_line, parse_prometheus};
use support::nginx_h2::NginxH2;
use support::{
    curl, curl_ok, sha256_hex, wait_until, ConfigBuilder, Nginx, Ringway, Route, TempDir,
    TestUpstream,
};

/// Runs `openssl s_client -connect 127.0.0.1:<port> <args>` with `input` on stdin (then EOF);
/// returns stdout and stderr together. `timeout` bounds it in case a server never answers.
fn s_client(port: u16, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client (tests/run installs openssl)");
    {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A request that makes the server close the connection after answering, so `s_client -ign_eof`
/// reads everything the server sends (TLS 1.3 session tickets included) and then exits.
const CLOSE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

fn listener_stat(rw: &Ringway, stat: &str) -> u64 {
    rw.stat(&format!("listener.127.0.0.1_{}.{stat}", rw.listen_port))
}

#[test]
fn curl_https_with_a_test_ca_and_tls_stats() {
    let up = TestUpstream::start();
    let dir = TempDir::new("tls-curl");
    let ca = TestCa::new("Ringway Test CA");
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca
        .leaf("localhost", &["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let cfg = ConfigBuilder::single(&[up.port]).filter_chain(&downstream_tls(&cert, &key, "", ""));
    let rw = Ringway::start(&cfg.render());
    let url = format!("https://localhost:{}/hello", rw.listen_port);
    let ca_arg = ca_path.to_str().unwrap();

    let out = curl_ok(&[
        "--cacert",
        ca_arg,
        "--http1.1",
        "-w",
        "%{http_code} %{http_version}",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(out, "200 1.1");
    assert_eq!(up.last_request().unwrap().path, "/hello");

    // TLS 1.2 too, and a client that does not trust the CA is refused by curl.
    let out = curl_ok(&[
        "--cacert",
        ca_arg,
        "--http1.1",
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(out, "200");
    let untrusted = curl(&["--http1.1", "-o", "/dev/null", &url]);
    assert!(!untrusted.status.success(), "curl trusted an unknown CA");

    // Plain HTTP to the TLS port is a TLS error, not a request.
    let plain = curl(&[
        "-o",
        "/dev/null",
        &format!("http://127.0.0.1:{}/", rw.listen_port),
    ]);
    assert!(!plain.status.success());
    assert_eq!(up.requests(), 2);

    assert_eq!(listener_stat(&rw, "ssl.handshake"), 2);
    assert_eq!(listener_stat(&rw, "ssl.versions.TLSv1.3"), 1);
    assert_eq!(listener_stat(&rw, "ssl.versions.TLSv1.2"), 1);
    assert_eq!(listener_stat(&rw, "ssl.no_certificate"), 2);
    // The untrusting curl aborts with an alert; plain HTTP is no TLS record at all.
    assert_eq!(listener_stat(&rw, "ssl.connection_error"), 2);
    assert_eq!(rw.stat("http.ingress_http.downstream_cx_ssl_total"), 2);
    rw.wait_stat("http.ingress_http.downstream_cx_ssl_active", 0);

    let (code, prom) = rw.admin_get("/stats/prometheus");
    assert_eq!(code, 200);
    let samples = parse_prometheus(&prom).unwrap();
    let handshakes = samples
        .iter()
        .find(|s| s.name == "envoy_listener_ssl_handshake")
        .unwrap_or_else(|| panic!("no envoy_listener_ssl_handshake in\n{prom}"));
    assert_eq!(handshakes.value, 2.0);
    assert_eq!(
        handshakes.label("envoy_listener_address"),
        Some(format!("127.0.0.1_{}", rw.listen_port).as_str())
    );
    assert!(samples
        .iter()
        .any(|s| s.name == "envoy_http_downstream_cx_ssl_total" && s.value == 2.0));
    // A plain cluster has no ssl.* stats (Envoy creates them with a TLS context).
    assert!(!rw
        .stats()
        .keys()
        .any(|k| k.starts_with("cluster.backend.ssl.")));
}

#[test]
fn sni_selects_the_certificate_and_alpn_is_negotiated() {
    let dir = TempDir::new("tls-sni");
    let ca = TestCa::new("Ringway Test CA");
    let (a_crt, a_key) = ca.leaf("a.example", &["a.example"]).write(dir.path(), "a");
    let (b_crt, b_key) = ca.leaf("b.example", &["b.example"]).write(dir.path(), "b");
    let (d_crt, d_key) = ca
        .leaf("default.example", &["default.example"])
        .write(dir.path(), "default");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&format!(
            "filter_chain_match: {{ server_names: [a.example, \"*.a.example\"] }}\n{}",
            downstream_tls(&a_crt, &a_key, "", "")
        ))
        .filter_chain(&format!(
            "filter_chain_match: {{ server_names: [b.example] }}\n{}",
            downstream_tls(&b_crt, &b_key, "alpn_protocols: [http/1.1]", "")
        ))
        .filter_chain(&downstream_tls(&d_crt, &d_key, "", ""));
    let rw = Ringway::start(&cfg.render());
    let port = rw.listen_port;

    let subject = |args: &[&str]| {
        let out = s_client(port, args, b"");
        out.lines()
            .find_map(|l| l.strip_prefix("subject=").map(str::to_string))
            .unwrap_or_else(|| panic!("no certificate in s_client {args:?}:\n{out}"))
    };
    assert_eq!(subject(&["-servername", "a.example"]), "CN = a.example");
    assert_eq!(subject(&["-servername", "x.a.example"]), "CN = a.example");
    assert_eq!(subject(&["-servername", "b.example"]), "CN = b.example");
    assert_eq!(
        subject(&["-servername", "c.example"]),
        "CN = default.example"
    );
    assert_eq!(subject(&["-noservername"]), "CN = default.example");

    let alpn = |name: &str, offer: &str| {
        let out = s_client(port, &["-servername", name, "-alpn", offer], b"");
        out.lines()
            .find(|l| l.contains("ALPN"))
            .unwrap_or_else(|| panic!("no ALPN line:\n{out}"))
            .to_string()
    };
    // Default for codec_type AUTO: h2 first, then http/1.1.
    assert_eq!(alpn("a.example", "h2,http/1.1"), "ALPN protocol: h2");
    assert_eq!(alpn("a.example", "http/1.1"), "ALPN protocol: http/1.1");
    // Chain b offers only what it was configured with.
    assert_eq!(alpn("b.example", "h2,http/1.1"), "ALPN protocol: http/1.1");
    assert_eq!(listener_stat(&rw, "ssl.handshake"), 8);
}

#[test]
fn unknown_sni_without_a_default_chain_fails_the_handshake() {
    let dir = TempDir::new("tls-nodefault");
    let ca = TestCa::new("Ringway Test CA");
    let (crt, key) = ca.leaf("a.example", &["a.example"]).write(dir.path(), "a");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&format!(
            "filter_chain_match: {{ server_names: [a.example] }}\n{}",
            downstream_tls(&crt, &key, "", "")
        ));
    let rw = Ringway::start(&cfg.render());
    let out = s_client(rw.listen_port, &["-servername", "other.example"], b"");
    assert!(
        !out.contains("subject="),
        "a certificate was served:\n{out}"
    );
    let out = s_client(rw.listen_port, &["-servername", "a.example"], b"");
    assert!(out.contains("subject=CN = a.example"), "{out}");
    assert_eq!(listener_stat(&rw, "no_filter_chain_match"), 1);
    assert_eq!(listener_stat(&rw, "ssl.handshake"), 1);
}

#[test]
fn a_silent_client_is_closed_after_the_handshake_timeout() {
    let dir = TempDir::new("tls-timeout");
    let ca = TestCa::new("Ringway Test CA");
    let (crt, key) = ca.leaf("localhost", &["localhost"]).write(dir.path(), "s");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&format!(
            "transport_socket_connect_timeout: 0.3s\n{}",
            downstream_tls(&crt, &key, "", "")
        ));
    let rw = Ringway::start(&cfg.render());

    // Connect and send nothing: the proxy must close the connection on its own. The read timeout
    // is only a bound so a broken proxy fails the test instead of hanging it.
    let mut s = TcpStream::connect(("127.0.0.1", rw.listen_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the proxy sent {n} bytes to a client that sent nothing"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the silent connection was not closed: {e}"),
    }
    rw.wait_stat(
        &format!(
            "listener.127.0.0.1_{}.downstream_cx_transport_socket_connect_timeout",
            rw.listen_port
        ),
        1,
    );
    rw.wait_stat(
        &format!("listener.127.0.0.1_{}.downstream_cx_active", rw.listen_port),
        0,
    );
    // A client that does complete its handshake in time is served.
    let out = s_client(rw.listen_port, &["-servername", "localhost"], b"");
    assert!(out.contains("subject=CN = localhost"), "{out}");
}

#[test]
fn sessions_resume_with_tickets_and_session_ids() {
    let dir = TempDir::new("tls-resume");
    let ca = TestCa::new("Ringway Test CA");
    let (a_crt, a_key) = ca.leaf("a.example", &["a.example"]).write(dir.path(), "a");
    let (n_crt, n_key) = ca.leaf("n.example", &["n.example"]).write(dir.path(), "n");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&format!(
            "filter_chain_match: {{ server_names: [a.example] }}\n{}",
            downstream_tls(&a_crt, &a_key, "", "")
        ))
        .filter_chain(&format!(
            "filter_chain_match: {{ server_names: [n.example] }}\n{}",
            downstream_tls(
                &n_crt,
                &n_key,
                "",
                "disable_stateless_session_resumption: true\ndisable_stateful_session_resumption: true"
            )
        ));
    let rw = Ringway::start(&cfg.render());
    let port = rw.listen_port;
    let line = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("New,") || l.starts_with("Reused,"))
            .unwrap_or_else(|| panic!("no session line:\n{out}"))
            .split(',')
            .next()
            .unwrap()
            .to_string()
    };
    // (first connection, second connection offering the first one's session); `None` when the
    // server issued nothing to resume with.
    let resume = |name: &str, version: &str| -> (String, Option<String>) {
        let sess_path = dir.join(&format!("{name}{version}.sess"));
        let sess = sess_path.to_str().unwrap();
        let first = s_client(
            port,
            &["-servername", name, version, "-ign_eof", "-sess_out", sess],
            CLOSE_REQUEST,
        );
        assert!(first.contains("HTTP/1.1 200"), "{first}");
        if !sess_path.exists() {
            return (line(&first), None);
        }
        let second = s_client(
            port,
            &["-servername", name, version, "-ign_eof", "-sess_in", sess],
            CLOSE_REQUEST,
        );
        (line(&first), Some(line(&second)))
    };
    // TLS 1.3 resumes through session tickets, TLS 1.2 through tickets or the session-id cache;
    // the connections land on either of the two workers, which share the session state.
    for version in ["-tls1_3", "-tls1_2"] {
        assert_eq!(
            resume("a.example", version),
            ("New".to_string(), Some("Reused".to_string())),
            "{version}"
        );
    }
    // Both kinds of resumption disabled on chain n: no TLS 1.3 ticket, no TLS 1.2 ticket or
    // session id, so the client has nothing to offer next time.
    for version in ["-tls1_3", "-tls1_2"] {
        assert_eq!(
            resume("n.example", version),
            ("New".to_string(), None),
            "{version}"
        );
    }
    assert_eq!(listener_stat(&rw, "ssl.session_reused"), 2);
    assert_eq!(listener_stat(&rw, "ssl.handshake"), 6);
}

/// The DER of the certificate a TLS server at `port` presents for `name`, or the handshake error.
fn presented(config: &Arc<rustls::ClientConfig>, port: u16, name: &str) -> Result<Vec<u8>, String> {
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(config.clone(), server_name).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let certs = conn.peer_certificates().ok_or("no peer certificate")?;
    Ok(certs[0].as_ref().to_vec())
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn certificates_reload_without_a_failed_handshake() {
    let dir = TempDir::new("tls-reload");
    let ca = TestCa::new("Ringway Test CA");
    let old = ca.leaf("old.example", &["localhost"]);
    let new = ca.leaf("new.example", &["localhost"]);
    let (crt, key) = old.write(dir.path(), "server");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&downstream_tls(&crt, &key, "", ""));
    let rw = Ringway::start(&cfg.render());
    let port = rw.listen_port;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der_of(&ca.pem)))
        .unwrap();
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let (old_der, new_der) = (der_of(&old.cert), der_of(&new.cert));

    // Handshakes back to back on two threads while the files are replaced.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            let (old_der, new_der) = (old_der.clone(), new_der.clone());
            std::thread::spawn(move || {
                let (mut olds, mut news, mut failures) = (0u32, 0u32, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match presented(&client, port, "localhost") {
                        Ok(d) if d == old_der => olds += 1,
                        Ok(d) if d == new_der => news += 1,
                        Ok(_) => failures.push("an unknown certificate".to_string()),
                        Err(e) => failures.push(e),
                    }
                }
                (olds, news, failures)
            })
        })
        .collect();
    let served_new = |c: &Arc<rustls::ClientConfig>| {
        presented(c, port, "localhost")
            .ok()
            .filter(|d| *d == new_der)
    };
    std::thread::sleep(Duration::from_millis(300));
    new.replace(&crt, &key);
    let adopted = wait_until(Duration::from_secs(10), || served_new(&client));
    // Let both workers' handshakes run on the new certificate for a moment.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<_> = loops.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        adopted.is_some(),
        "the new certificate was not served within 10 s"
    );
    let olds: u32 = results.iter().map(|r| r.0).sum();
    let news: u32 = results.iter().map(|r| r.1).sum();
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.2).collect();
    assert!(
        failures.is_empty(),
        "failed handshakes during reload: {failures:?}"
    );
    assert!(olds > 0 && news > 0, "old {olds}, new {news}");
    assert_eq!(listener_stat(&rw, "ssl.connection_error"), 0);

    // A broken replacement keeps the certificate being served.
    std::fs::write(&crt, "not a certificate").unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(presented(&client, port, "localhost"), Ok(new_der));
    assert!(
        rw.stderr_text()
            .contains("certificate reload failed, keeping the previous certificates"),
        "{}",
        rw.stderr_text()
    );
}

/// nginx serving HTTPS with a certificate from `ca` for localhost/127.0.0.1.
fn nginx_tls(ca: &TestCa, dir: &Path) -> Nginx {
    let (crt, key) = ca
        .leaf("upstream.example", &["localhost", "127.0.0.1"])
        .write(dir, "nginx");
    Nginx::start_tls(&crt, &key)
}

#[test]
fn upstream_tls_verifies_the_certificate_unless_told_not_to() {
    let dir = TempDir::new("tls-upstream");
    let ca = TestCa::new("Upstream CA");
    let other = TestCa::new("Some Other CA");
    let nginx = nginx_tls(&ca, dir.path());
    let ca_path = ca.write(dir.path());
    let other_dir = TempDir::new("tls-upstream-other");
    let other_path = other.write(other_dir.path());
    let log = dir.join("access.log");
    let health = "health_checks:
- timeout: 1s
  interval: 0.2s
  unhealthy_threshold: 1
  healthy_threshold: 1
  http_health_check: { path: / }
";
    let cfg = ConfigBuilder::new()
        .cluster("good", &[nginx.port])
        .cluster("named", &[nginx.port])
        .cluster("wrongca", &[nginx.port])
        .cluster("untrusted", &[nginx.port])
        .cluster_extra(
            "good",
            &upstream_tls(&format!(
                "common_tls_context:\n  validation_context:\n    trusted_ca: {{ filename: {} }}",
                ca_path.display()
            )),
        )
        .cluster_extra("good", health)
        .cluster_extra(
            "named",
            &upstream_tls(&format!(
                "sni: localhost\ncommon_tls_context:\n  validation_context:\n    trusted_ca: {{ filename: {} }}",
                ca_path.display()
            )),
        )
        .cluster_extra(
            "wrongca",
            &upstream_tls(&format!(
                "common_tls_context:\n  validation_context:\n    trusted_ca: {{ filename: {} }}",
                other_path.display()
            )),
        )
        .cluster_extra("wrongca", health)
        .cluster_extra(
            "untrusted",
            &upstream_tls(
                "common_tls_context:\n  validation_context:\n    trust_chain_verification: ACCEPT_UNTRUSTED",
            ),
        )
        .route(Route::prefix("/good", "good"))
        .route(Route::prefix("/named", "named"))
        .route(Route::prefix("/wrong", "wrongca"))
        .route(Route::prefix("/untrusted", "untrusted"))
        .access_log(log.to_str().unwrap());
    let rw = Ringway::start(&cfg.render());

    let get = |path: &str| curl_ok(&["-w", "%{http_code}", "-o", "/dev/null", &rw.url(path)]);
    assert_eq!(get("/good"), "200");
    assert_eq!(
        curl_ok(&[&rw.url("/good/again")]),
        "nginx\n",
        "the body comes from nginx over TLS"
    );
    assert_eq!(get("/named"), "200");
    assert_eq!(get("/untrusted"), "200");
    assert_eq!(get("/wrong"), "503");

    assert!(rw.stat("cluster.good.ssl.handshake") >= 1);
    assert_eq!(rw.stat("cluster.good.ssl.fail_verify_error"), 0);
    assert!(rw.stat("cluster.wrongca.ssl.fail_verify_error") >= 1);
    assert!(rw.stat("cluster.wrongca.upstream_cx_connect_fail") >= 1);
    assert_eq!(rw.stat("cluster.wrongca.ssl.handshake"), 0);
    assert_eq!(rw.stat("cluster.untrusted.ssl.handshake"), 1);

    // The access log marks the refused upstream as a connection failure (UF).
    let line = wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .map(|l| parse_access_line(l).unwrap())
            .find(|l| l.path == "/wrong")
    })
    .expect("an access-log line for /wrong");
    assert_eq!((line.code, line.flags.as_str()), (503, "UF"));

    // Active health checks speak TLS with the cluster's settings: nginx answers the good
    // cluster's checks, and the wrong CA fails them.
    let checked = wait_until(Duration::from_secs(10), || {
        let s = rw.stats();
        (s.get("cluster.good.health_check.success").copied()? >= 1
            && s.get("cluster.wrongca.health_check.failure").copied()? >= 1)
            .then_some(())
    });
    assert!(
        checked.is_some(),
        "health checks over TLS: {:?}",
        rw.stats()
    );
    assert_eq!(rw.stat("cluster.good.health_check.failure"), 0);
}

#[test]
fn a_missing_certificate_file_stops_start_up_before_binding() {
    let dir = TempDir::new("tls-missing");
    let missing = dir.join("missing.crt");
    let cfg = ConfigBuilder::new()
        .route(Route::direct("/", 200, "ok"))
        .filter_chain(&downstream_tls(&missing, &dir.join("missing.key"), "", ""));
    let yaml = cfg.render();
    let out = Ringway::validate(&yaml);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("static_resources.listeners[0].filter_chains[0].transport_socket.typed_config.common_tls_context.tls_certificates[0].certificate_chain.filename: cannot read"),
        "{stderr}"
    );

    // Serving mode: exits non-zero and never binds the listener.
    let path = dir.join("config.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let port = cfg_listen_port(&yaml);
    let out = Command::new("timeout")
        .arg("20")
        .arg(support::ringway::binary())
        .arg("-c")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate_chain.filename"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

fn cfg_listen_port(yaml: &str) -> u16 {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
    v["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
        .as_u64()
        .unwrap() as u16
}

#[test]
fn envoys_front_proxy_example_validates_unchanged() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/envoy-front-proxy.yaml");
    let out = Command::new(support::ringway::binary())
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http2_over_tls_by_alpn_both_directions() {
    // Downstream: curl negotiates h2 by ALPN. Upstream: an HTTP/2 cluster over TLS (ALPN h2) to
    // nginx `listen ssl http2`, whose self-signed certificate is accepted explicitly.
    let nginx = NginxH2::start_with_tls(8 << 20);
    let dir = TempDir::new("tls-h2");
    let ca = TestCa::new("Ringway Test CA");
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca
        .leaf("localhost", &["localhost", "127.0.0.1"])
        .write(dir.path(), "server");
    let upstream_port = nginx.tls_port.expect("nginx TLS port");
    let cfg = ConfigBuilder::new()
        .cluster("backend", &[upstream_port])
        .h2_cluster("backend")
        .cluster_extra(
            "backend",
            &upstream_tls(
                "common_tls_context:\n  validation_context:\n    trust_chain_verification: ACCEPT_UNTRUSTED",
            ),
        )
        .route(Route::prefix("/", "backend"))
        .filter_chain(&downstream_tls(&cert, &key, "", ""));
    let rw = Ringway::start(&cfg.render());
    let out_file = dir.join("big.out");
    let out = curl_ok(&[
        "--cacert",
        ca_path.to_str().unwrap(),
        "--http2",
        "-o",
        out_file.to_str().unwrap(),
        "-w",
        "%{http_code} %{http_version}",
        &format!("https://localhost:{}/big", rw.listen_port),
    ]);
    assert_eq!(out, "200 2", "HTTP/2 negotiated by ALPN");
    let body = std::fs::read(&out_file).unwrap();
    assert_eq!(body.len(), nginx.big_len);
    assert_eq!(sha256_hex(&body), nginx.big_sha256);
    assert_eq!(rw.stat("http.ingress_http.downstream_cx_http2_total"), 1);
    assert_eq!(rw.stat("http.ingress_http.downstream_cx_ssl_total"), 1);
    assert_eq!(rw.stat("cluster.backend.upstream_cx_http2_total"), 1);
    assert!(rw.stat("cluster.backend.ssl.handshake") >= 1);
}
