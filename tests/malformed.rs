//! Malformed requests never reach an upstream: each gets its local error status and the connection
//! is closed. Table-driven from the codec's own vector list
//! (`ringway::http1::vectors::MALFORMED_REQUESTS`), so every vector the codec's unit tests know
//! is also checked end to end through the real binary, sent whole and split at every byte boundary
//! (a parser that is only correct when a head arrives in one read is the classic bug).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ::ringway::http1::vectors::MALFORMED_REQUESTS;
use support::*;

/// Vectors up to this size are also sent split at every boundary; longer ones at 64 evenly spread
/// boundaries (run time grows with the square of the size otherwise).
const SPLIT_ALL_BELOW: usize = 200;
const SPLIT_PAUSE: Duration = Duration::from_millis(3);
const THREADS: usize = 4;

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

/// Sends `bytes` (split at `split` if given) and checks status and close; returns a failure text.
fn check(
    port: u16,
    name: &str,
    bytes: &[u8],
    want: u16,
    split: Option<usize>,
) -> Result<(), String> {
    let ctx = || {
        format!(
            "vector {name:?} ({}){}",
            show(bytes),
            split
                .map(|s| format!(" split at byte {s}"))
                .unwrap_or_default()
        )
    };
    let mut c = RawConn::connect(port).map_err(|e| format!("{}: connect: {e}", ctx()))?;
    c.timeout = Duration::from_secs(5);
    let sent = match split {
        Some(at) => c.send_split(bytes, at, SPLIT_PAUSE),
        None => c.send(bytes),
    };
    if let Err(e) = sent {
        return Err(format!("{}: send: {e}", ctx()));
    }
    let r = c
        .read_response()
        .map_err(|e| format!("{}: no response: {e}", ctx()))?;
    if r.status != want {
        return Err(format!(
            "{}: got {} ({:?}), want {want}",
            ctx(),
            r.status,
            r.body_text()
        ));
    }
    if !c.closed_within(Duration::from_secs(3)) {
        return Err(format!(
            "{}: got {want} but the connection was left open",
            ctx()
        ));
    }
    Ok(())
}

fn start() -> (TestUpstream, Ringway) {
    let u = TestUpstream::start();
    let rw = Ringway::start(&ConfigBuilder::single(&[u.port]).render());
    (u, rw)
}

#[test]
fn a_malformed_request_gets_400_and_close() {
    let (u, rw) = start();
    check(
        rw.listen_port,
        "space in header name",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        400,
        None,
    )
    .unwrap();
    check(
        rw.listen_port,
        "content-length and chunked",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        None,
    )
    .unwrap();
    assert_eq!(
        u.requests(),
        0,
        "a malformed request reached the upstream: {:?}",
        u.log()
    );
}

#[test]
fn every_malformed_vector_whole() {
    assert!(
        !MALFORMED_REQUESTS.is_empty(),
        "the codec exports no malformed vectors"
    );
    let (u, rw) = start();
    let mut failures = Vec::new();
    for (name, bytes, want) in MALFORMED_REQUESTS {
        if let Err(e) = check(rw.listen_port, name, bytes, *want, None) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        MALFORMED_REQUESTS.len(),
        failures.join("\n")
    );
    assert_eq!(
        u.requests(),
        0,
        "malformed requests reached the upstream: {:?}",
        u.log()
    );
}

#[test]
fn every_malformed_vector_split_at_each_boundary() {
    let (u, rw) = start();
    // Every (vector, split point) pair, shared out to a few threads.
    let mut jobs: Vec<(usize, usize)> = Vec::new();
    for (i, (_, bytes, _)) in MALFORMED_REQUESTS.iter().enumerate() {
        let n = bytes.len();
        if n < 2 {
            continue;
        }
        if n < SPLIT_ALL_BELOW {
            jobs.extend((1..n).map(|at| (i, at)));
        } else {
            jobs.extend((1..=64).map(|k| (i, (k * (n - 1) / 65).max(1))));
        }
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, at)) = jobs.get(j) else { break };
                let (name, bytes, want) = MALFORMED_REQUESTS[i];
                if let Err(e) = check(rw.listen_port, name, bytes, want, Some(at)) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} split sends failed (first 40 shown):\n{}",
        failures.len(),
        jobs.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        u.requests(),
        0,
        "malformed requests reached the upstream: {:?}",
        u.log()
    );
}
