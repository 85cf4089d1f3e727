//! Runtime membership against the real binary: the admin `/clusters/<name>/endpoints` API,
//! file-based EDS (atomic-rename reloads, rejected bad files), the EDS configuration fields, and
//! graceful removal (in-flight requests finish, idle connections to removed endpoints close).

mod support;

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{http_get, ConfigBuilder, Ringway, TempDir, TestUpstream};

/// Sends `n` GETs (each on a fresh connection) and returns the ids of the upstreams that served them.
fn spray(rw: &Ringway, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let r = http_get(rw.listen_port, "/");
            assert_eq!(r.status, 200, "body: {}", r.body_text());
            r.header("x-upstream-id").unwrap_or_default().to_owned()
        })
        .collect()
}

fn addr(u: &TestUpstream) -> String {
    format!("127.0.0.1:{}", u.port)
}

fn post(rw: &Ringway, body: &str) -> (u16, String) {
    rw.admin_request("POST", "/clusters/backend/endpoints", body)
}

/// The `endpoints` list of `GET /clusters/backend/endpoints`.
fn members(rw: &Ringway) -> Vec<String> {
    let (code, body) = rw.admin_get("/clusters/backend/endpoints");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["endpoints"]
        .as_array()
        .unwrap_or_else(|| panic!("no endpoints list: {body}"))
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn admin_set_add_remove_steer_traffic() {
    let ups: Vec<TestUpstream> = (0..3).map(|_| TestUpstream::start()).collect();
    let ports: Vec<u16> = ups.iter().map(|u| u.port).collect();
    let rw = Ringway::start(&ConfigBuilder::single(&ports).render());
    assert_eq!(
        members(&rw),
        ups.iter().map(addr).collect::<Vec<_>>(),
        "GET lists the configured endpoints"
    );
    let served = spray(&rw, 12);
    for u in &ups {
        assert!(
            served.iter().any(|id| id == u.id()),
            "{} unused: {served:?}",
            u.id()
        );
    }

    // Remove the third: it receives nothing more.
    let (code, body) = post(&rw, &format!(r#"{{"remove": ["{}"]}}"#, addr(&ups[2])));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"changed\": true"), "{body}");
    let before = ups[2].requests();
    let served = spray(&rw, 20);
    assert_eq!(
        ups[2].requests(),
        before,
        "removed endpoint got requests: {served:?}"
    );
    assert!(served.iter().all(|id| id != ups[2].id()));
    rw.wait_stat("cluster.backend.membership_total", 2);

    // Add it back: it serves again.
    let (code, body) = post(&rw, &format!(r#"{{"add": ["{}"]}}"#, addr(&ups[2])));
    assert_eq!(code, 200, "{body}");
    let served = spray(&rw, 12);
    assert!(served.iter().any(|id| id == ups[2].id()), "{served:?}");

    // Adding a member again changes nothing (and is not counted).
    let (code, body) = post(&rw, &format!(r#"{{"add": ["{}"]}}"#, addr(&ups[0])));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"changed\": false"), "{body}");

    // Set: only the first one from now on.
    let (code, body) = post(&rw, &format!(r#"{{"set": ["{}"]}}"#, addr(&ups[0])));
    assert_eq!(code, 200, "{body}");
    assert_eq!(members(&rw), [addr(&ups[0])]);
    let served = spray(&rw, 10);
    assert!(served.iter().all(|id| id == ups[0].id()), "{served:?}");

    rw.wait_stat("cluster.backend.membership_change", 3);
    rw.wait_stat("cluster.backend.membership_total", 1);
    rw.wait_stat("cluster.backend.membership_healthy", 1);
    // Idle pooled connections to the removed endpoints are closed: only ups[0]'s stay open.
    let ok = support::wait_until(Duration::from_secs(3), || {
        let s = rw.stats();
        let active = s.get("cluster.backend.upstream_cx_active").copied();
        let by_first = ups[0].connections();
        (active.is_some_and(|a| a <= by_first)).then_some(())
    });
    assert!(
        ok.is_some(),
        "idle connections to removed endpoints stayed open: {:?}",
        rw.stat("cluster.backend.upstream_cx_active")
    );
}

#[test]
fn admin_rejects_bad_requests_and_changes_nothing() {
    let a = TestUpstream::start();
    let b = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[a.port, b.port]).render());
    let before = members(&rw);
    let cases: &[(&str, &str)] = &[
        ("{", "invalid JSON body"),
        (r#"{"set": ["127.0.0.1:1"], "add": []}"#, "exactly one of"),
        (r#"{"replace": []}"#, "unknown field \"replace\""),
        (
            r#"{"add": ["localhost:80"]}"#,
            r#""add"[0]: "localhost:80" is not an IP address"#,
        ),
        (
            r#"{"set": ["127.0.0.1:1", "bad"]}"#,
            r#""set"[1]: "bad" is not an IP address"#,
        ),
        (
            r#"{"remove": "127.0.0.1:1"}"#,
            r#""remove": expected a list"#,
        ),
    ];
    for (body, want) in cases {
        let (code, text) = post(&rw, body);
        assert_eq!(code, 400, "{body} -> {text}");
        assert!(text.contains(want), "{body} -> {text} (want {want:?})");
    }
    let (code, text) = rw.admin_request("POST", "/clusters/nope/endpoints", r#"{"set": []}"#);
    assert_eq!(code, 404, "{text}");
    assert!(text.contains("unknown cluster 'nope'"), "{text}");
    let (code, _) = rw.admin_request("PUT", "/clusters/backend/endpoints", r#"{"set": []}"#);
    assert_eq!(code, 405);
    assert_eq!(
        members(&rw),
        before,
        "a rejected request changed the members"
    );
    assert_eq!(rw.stat("cluster.backend.membership_change"), 0);
    assert_eq!(rw.stat("cluster.backend.membership_total"), 2);
}

#[test]
fn dns_clusters_refuse_admin_changes() {
    let u = TestUpstream::start();
    let yaml = ConfigBuilder::single(&[u.port])
        .render()
        .replace("type: STATIC", "type: STRICT_DNS")
        .replace(
            &format!("address: 127.0.0.1, port_value: {} ", u.port),
            &format!("address: localhost, port_value: {} ", u.port),
        );
    assert!(yaml.contains("address: localhost"), "{yaml}");
    let rw = Ringway::start(&yaml);
    let (code, body) = post(&rw, r#"{"set": []}"#);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("owned by DNS"), "{body}");
}

/// A DiscoveryResponse for cluster `backend` with endpoints on 127.0.0.1 at `ports`.
fn eds_doc(version: &str, ports: &[u16]) -> String {
    let mut y = format!(
        "version_info: \"{version}\"\nresources:\n- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: backend\n  endpoints:\n  - lb_endpoints:\n"
    );
    for p in ports {
        y.push_str(&format!(
            "    - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {p}}}}}}}\n"
        ));
    }
    y
}

/// Replaces `path` the way Envoy expects: write a temporary file, then rename it over.
fn replace_atomically(dir: &TempDir, path: &std::path::Path, text: &str) {
    let tmp = dir.join("eds.yaml.tmp");
    std::fs::write(&tmp, text).expect("write temporary EDS file");
    std::fs::rename(&tmp, path).expect("rename EDS file into place");
}

#[test]
fn eds_file_reloads_on_atomic_rename_and_keeps_members_on_a_bad_file() {
    let a = TestUpstream::start();
    let b = TestUpstream::start();
    let dir = TempDir::new("eds");
    let eds = dir.join("eds.yaml");
    std::fs::write(&eds, eds_doc("1", &[a.port])).expect("write EDS file");
    let cfg = ConfigBuilder::new()
        .eds_cluster("backend", &eds.display().to_string())
        .route(support::Route::prefix("/", "backend"));
    let rw = Ringway::start(&cfg.render());
    assert!(spray(&rw, 4).iter().all(|id| id == a.id()));
    assert_eq!(rw.stat("cluster.backend.update_success"), 1);
    // The first read counts as a change too (from no members), as in Envoy.
    assert_eq!(rw.stat("cluster.backend.membership_change"), 1);
    assert_eq!(members(&rw), [addr(&a)]);

    // Replaced by an atomic rename: picked up within the 1 s promise (1.5 s deadline).
    replace_atomically(&dir, &eds, &eds_doc("2", &[b.port]));
    let started = Instant::now();
    let moved = support::wait_until(Duration::from_millis(1500), || {
        (http_get(rw.listen_port, "/").header("x-upstream-id") == Some(b.id())).then_some(())
    });
    assert!(
        moved.is_some(),
        "EDS change not applied within 1.5 s (members: {:?})",
        members(&rw)
    );
    eprintln!("EDS rename picked up after {:?}", started.elapsed());
    assert!(spray(&rw, 6).iter().all(|id| id == b.id()));
    rw.wait_stat("cluster.backend.update_success", 2);
    rw.wait_stat("cluster.backend.membership_change", 2);

    // A bad file is rejected once and the last good members keep serving.
    replace_atomically(
        &dir,
        &eds,
        &eds_doc("3", &[a.port]).replace("port_value", "port_valu"),
    );
    rw.wait_stat("cluster.backend.update_rejected", 1);
    assert!(spray(&rw, 6).iter().all(|id| id == b.id()));
    assert!(
        rw.stderr_text().contains("port_valu"),
        "the rejection is logged with the field: {}",
        rw.stderr_text()
    );
    thread::sleep(Duration::from_millis(400));
    assert_eq!(
        rw.stat("cluster.backend.update_rejected"),
        1,
        "counted once per bad file"
    );
    assert_eq!(rw.stat("cluster.backend.membership_change"), 2);

    // A good file after a bad one is accepted again; both endpoints now serve.
    replace_atomically(&dir, &eds, &eds_doc("4", &[a.port, b.port]));
    rw.wait_stat("cluster.backend.update_success", 3);
    let served = spray(&rw, 8);
    assert!(served.iter().any(|id| id == a.id()) && served.iter().any(|id| id == b.id()));
    assert_eq!(rw.stat("cluster.backend.membership_total"), 2);

    // The admin API edits EDS clusters too.
    let (code, body) = post(&rw, &format!(r#"{{"remove": ["{}"]}}"#, addr(&a)));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"type\": \"EDS\""), "{body}");
    assert!(spray(&rw, 4).iter().all(|id| id == b.id()));
}

#[test]
fn eds_config_fields_and_errors() {
    let base = ConfigBuilder::new().route(support::Route::prefix("/", "backend"));
    let dir = TempDir::new("eds-config");
    let eds = dir.join("eds.json");
    std::fs::write(
        &eds,
        r#"{"version_info": "1", "resources": [{"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", "cluster_name": "svc", "endpoints": []}]}"#,
    )
    .expect("write EDS file");
    let eds_s = eds.display().to_string();

    // The older `eds_config.path`, a service_name, and JSON content all work.
    let yaml = base
        .clone()
        .eds_cluster("backend", &eds_s)
        .render()
        .replace(
            "        resource_api_version: V3\n        path_config_source:\n          path:",
            "        path:",
        )
        .replace(
            "      eds_config:\n",
            "      service_name: svc\n      eds_config:\n",
        );
    assert!(yaml.contains("service_name: svc") && !yaml.contains("path_config_source"));
    let out = Ringway::validate(&yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rw = Ringway::start(&yaml);
    assert!(members(&rw).is_empty());
    assert_eq!(
        http_get(rw.listen_port, "/").status,
        503,
        "no members: no healthy upstream"
    );
    drop(rw);

    // Missing path: a configuration error at the field's path.
    let yaml = base
        .clone()
        .eds_cluster("backend", "x")
        .render()
        .replace("          path: \"x\"\n", "");
    let out = Ringway::validate(&yaml);
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains("static_resources.clusters[0].eds_cluster_config.eds_config.path_config_source.path: required field is missing"),
        "{err}"
    );

    // A file that is missing, or names no matching cluster, stops start-up naming file and field.
    let missing = dir.join("missing.yaml").display().to_string();
    let err = start_failure(
        &base.clone().eds_cluster("backend", &missing).render(),
        &dir,
    );
    assert!(
        err.contains(&missing) && err.contains("cluster 'backend'"),
        "{err}"
    );
    let err = start_failure(
        &base
            .eds_cluster("other", &eds_s)
            .render()
            .replace("cluster: \"backend\"", "cluster: \"other\""),
        &dir,
    );
    assert!(
        err.contains(&eds_s)
            && err.contains("resources: no ClusterLoadAssignment with cluster_name other"),
        "{err}"
    );
}

/// Runs ringway on `yaml`, expecting it to exit non-zero during start-up; returns its stderr.
fn start_failure(yaml: &str, dir: &TempDir) -> String {
    let path = dir.join("bad-start.yaml");
    std::fs::write(&path, yaml).expect("write config");
    let mut child = Command::new(support::ringway::binary())
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--no-pin", "-l", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringway");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            assert!(!status.success(), "ringway started on a bad EDS setup");
            let out = child.wait_with_output().expect("collect stderr");
            return String::from_utf8_lossy(&out.stderr).into_owned();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringway kept running on a bad EDS setup:\n{yaml}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn removed_endpoint_finishes_in_flight_requests() {
    let a = TestUpstream::start();
    let b = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[a.port]).render());
    let port = rw.listen_port;
    let slow = thread::spawn(move || http_get(port, "/delay/1000"));
    let arrived = support::wait_until(Duration::from_secs(5), || (a.requests() == 1).then_some(()));
    assert!(
        arrived.is_some(),
        "the slow request never reached the upstream"
    );

    let (code, body) = post(&rw, &format!(r#"{{"set": ["{}"]}}"#, addr(&b)));
    assert_eq!(code, 200, "{body}");
    // New requests go to the new member at once, while the old one is still busy.
    assert!(spray(&rw, 4).iter().all(|id| id == b.id()));

    let r = slow.join().expect("slow request thread");
    assert_eq!(
        r.status,
        200,
        "in-flight request to a removed endpoint failed: {}",
        r.body_text()
    );
    assert_eq!(r.header("x-upstream-id"), Some(a.id()));
    assert_eq!(a.requests(), 1);
    // Its connection is not pooled again: only b's connection(s) stay open.
    let ok = support::wait_until(Duration::from_secs(3), || {
        let active = rw
            .stats()
            .get("cluster.backend.upstream_cx_active")
            .copied();
        active.is_some_and(|n| n <= b.connections()).then_some(())
    });
    assert!(
        ok.is_some(),
        "connection to the removed endpoint stayed open ({} active)",
        rw.stat("cluster.backend.upstream_cx_active")
    );
}
