//! Bodies through the proxy: 10 MiB chunked uploads and downloads checked by SHA-256, Content-Length
//! bodies, streaming echo, and Expect: 100-continue.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use support::*;

const TEN_MIB: usize = 10 * 1024 * 1024;

#[test]
fn ten_mib_chunked_upload_digest_matches() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let data = pattern(TEN_MIB);
    let want = sha256_hex(&data);
    let out = curl_with_stdin(
        &[
            "-T",
            "-",
            "-H",
            "Transfer-Encoding: chunked",
            "-w",
            "\n%{http_code}",
            &rw.url("/sha256"),
        ],
        Some(data),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text,
        format!("{want}\n200"),
        "digest of the 10 MiB chunked upload as the upstream saw it"
    );
    let req = u.last_request().unwrap();
    assert_eq!(req.body_len, TEN_MIB as u64);
}

#[test]
fn ten_mib_chunked_download_digest_matches() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let out = curl(&["-D", "/dev/stderr", &rw.url(&format!("/chunked/{TEN_MIB}"))]);
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout.len(), TEN_MIB);
    assert_eq!(sha256_hex(&out.stdout), sha256_hex(&pattern(TEN_MIB)));
}

#[test]
fn ten_mib_content_length_download_digest_matches() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let mut c = RawConn::open(rw.listen_port);
    c.send(format!("GET /bytes/{TEN_MIB} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(TEN_MIB.to_string().as_str()),
        "{:?}",
        r.headers
    );
    assert_eq!(sha256_hex(&r.body), sha256_hex(&pattern(TEN_MIB)));
}

#[test]
fn echo_streams_chunked_and_length_bodies() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let body = pattern(200_000);
    // Chunked in odd-sized chunks, written in two parts.
    let mut req = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend(support::chunked::encode(&body, 12_345));
    let mut c = RawConn::open(rw.listen_port);
    c.send_split(&req, req.len() / 3, std::time::Duration::from_millis(10))
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "chunked echo body differs");
    // Then a Content-Length body on the same connection.
    let mut req = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    c.send(&req).unwrap();
    let r = c.read_response().unwrap();
    assert_eq!(r.header("content-length"), Some("200000"));
    assert!(r.body == body, "content-length echo body differs");
}

#[test]
fn expect_100_continue_upload_works_with_curl() {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    let data = pattern(2 * 1024 * 1024);
    let t = std::time::Instant::now();
    let out = curl_with_stdin(
        &[
            "--data-binary",
            "@-",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "10",
            "-w",
            "\n%{http_code}",
            &rw.url("/sha256"),
        ],
        Some(data.clone()),
    );
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n200", sha256_hex(&data))
    );
    // curl sends the body anyway after --expect100-timeout; finishing well before it shows a
    // 100 Continue came back through the proxy.
    assert!(
        t.elapsed() < std::time::Duration::from_secs(8),
        "upload took {:?}: no 100 Continue reached curl, it waited out its 10 s expect timeout",
        t.elapsed()
    );
}
