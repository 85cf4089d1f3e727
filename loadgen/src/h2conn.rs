//! One HTTP/2 load connection (h2c with prior knowledge, or h2 over TLS with ALPN h2): the `h2`
//! client codec on monoio through `monoio_compat::StreamWrapper`, as the proxy's upstream h2
//! client does, with up to `--streams` requests in flight on it.
//!
//! Concurrency model: the connection has `streams` lanes (tasks), each taking the next request
//! from the connection's one schedule when it is free. The schedule is therefore unchanged from
//! HTTP/1.1 (open loop, one `Schedule` per connection), and a request that falls due while every
//! lane is busy is taken late with its clock started at its scheduled time: waiting for a free
//! stream is the server's doing and shows in the tail, exactly like a busy HTTP/1.1 connection.
//! A lane that takes a request before it is due sleeps until then (send lag is recorded as for
//! HTTP/1.1). Everything is on the worker's single-threaded runtime: the shared state is
//! `RefCell`/`Cell`, never borrowed across an await, and no lock is taken.
//!
//! Errors map to the report's kinds: TCP/TLS/h2 handshake failures are connect errors, a stream
//! or connection reset (RST_STREAM, GOAWAY, I/O error) is a reset, no response head or body end
//! within `--timeout` is a timeout, anything else the codec rejects is a protocol error. A
//! connection-level failure drops the connection; the next lane to need it reconnects.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use monoio_compat::StreamWrapper;

use crate::net::{self, Stream};
use crate::plan::{count_unsent, record_outcome, Failure, H2Plan, Pacing, Plan};
use crate::report::Recorder;

/// Buffer sizes of the compat wrapper: at least one 16 KiB frame per read or write.
const WRAPPER_BUFFER: usize = 32 * 1024;
/// Stream and connection receive windows: large enough that a response body never waits for a
/// WINDOW_UPDATE round trip on a loopback benchmark.
const WINDOW: u32 = 4 * 1024 * 1024;

#[derive(Clone)]
struct H2Conn {
    send: SendRequest<Bytes>,
    /// Set by the driver task when the connection ended.
    closed: Rc<Cell<bool>>,
}

/// What the lanes of one connection share.
struct Shared {
    pacing: RefCell<Pacing>,
    conn: RefCell<Option<H2Conn>>,
    connecting: Cell<bool>,
}

/// Run one HTTP/2 connection until the plan ends; returns what it observed in the measured window.
pub async fn run(plan: Rc<Plan>, h2: Rc<H2Plan>, pacing: Pacing) -> Recorder {
    let shared = Rc::new(Shared {
        pacing: RefCell::new(pacing),
        conn: RefCell::new(None),
        connecting: Cell::new(false),
    });
    // Connect up front so the first requests do not all pay the handshake at once.
    if let Ok(c) = open(&plan, &h2).await {
        *shared.conn.borrow_mut() = Some(c);
    }
    let lanes: Vec<_> = (0..h2.streams)
        .map(|_| monoio::spawn(lane(Rc::clone(&plan), Rc::clone(&h2), Rc::clone(&shared))))
        .collect();
    let mut rec = Recorder::new();
    for l in lanes {
        rec.merge(&l.await);
    }
    rec
}

/// One stream slot: take the next request, send it when due, record the outcome.
async fn lane(plan: Rc<Plan>, h2: Rc<H2Plan>, shared: Rc<Shared>) -> Recorder {
    let mut rec = Recorder::new();
    loop {
        let now = Instant::now();
        let due = match &mut *shared.pacing.borrow_mut() {
            Pacing::Open(s) => {
                let due = plan.t0 + s.peek();
                if due >= plan.end {
                    break;
                }
                if now >= plan.deadline {
                    rec.unsent += count_unsent(s, &plan);
                    break;
                }
                s.next_due();
                due
            }
            Pacing::Closed => {
                if now >= plan.end {
                    break;
                }
                now
            }
        };
        let start = if now < due {
            monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
            let woke = Instant::now();
            if due >= plan.measure_from {
                rec.record_send_lag(woke - due);
            }
            woke
        } else {
            // Every stream was busy when it fell due: the wait counts.
            due
        };
        let result = exchange(&plan, &h2, &shared).await;
        let connect_failed = matches!(result, Err(Failure::Connect));
        record_outcome(&plan, &mut rec, due, start, result);
        if connect_failed {
            // Do not spin on a refusing server; the schedule keeps its pace anyway.
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    rec
}

/// TCP, TLS (ALPN h2) and the HTTP/2 handshake within the timeout; starts the driver task.
async fn open(plan: &Plan, h2: &H2Plan) -> Result<H2Conn, Failure> {
    let deadline = Instant::now() + plan.timeout;
    let stream = net::connect(plan.addr, plan.tls.as_ref(), deadline)
        .await
        .map_err(|()| Failure::Connect)?;
    if let Stream::Tls(t) = &stream {
        if t.alpn_protocol().as_deref() != Some(b"h2") {
            net::report_once("the server did not select h2 through ALPN");
            return Err(Failure::Connect);
        }
    }
    let io = StreamWrapper::new_with_buffer_size(stream, WRAPPER_BUFFER, WRAPPER_BUFFER);
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .initial_max_send_streams(h2.streams)
        .enable_push(false);
    let at = monoio::time::Instant::from_std(deadline);
    let (send, connection) =
        match monoio::time::timeout_at(at, builder.handshake::<_, Bytes>(io)).await {
            Ok(Ok(pair)) => pair,
            _ => return Err(Failure::Connect),
        };
    let closed = Rc::new(Cell::new(false));
    let done = Rc::clone(&closed);
    monoio::spawn(async move {
        let _ = connection.await;
        done.set(true);
    });
    Ok(H2Conn { send, closed })
}

/// The live connection, or a new one (only one lane connects at a time; the others wait).
async fn current(plan: &Plan, h2: &H2Plan, shared: &Shared) -> Result<H2Conn, Failure> {
    loop {
        if let Some(c) = shared.conn.borrow().as_ref() {
            if !c.closed.get() {
                return Ok(c.clone());
            }
        }
        if !shared.connecting.get() {
            break;
        }
        if Instant::now() >= plan.deadline {
            return Err(Failure::Connect);
        }
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    shared.connecting.set(true);
    let opened = open(plan, h2).await;
    shared.connecting.set(false);
    *shared.conn.borrow_mut() = opened.as_ref().ok().cloned();
    opened
}

fn map_error(e: &h2::Error) -> Failure {
    if e.is_io() || e.is_reset() || e.is_go_away() {
        Failure::Reset
    } else {
        Failure::Protocol
    }
}

/// Send the request on a stream and read the whole response. Ok(status).
///
/// A request the server refused without processing it (GOAWAY with NO_ERROR naming an earlier
/// last stream, as nginx sends every `http2_max_requests`, or RST_STREAM REFUSED_STREAM) is
/// retried once on a new connection, as RFC 9113 section 8.7 allows: counting the server's
/// orderly connection rotation as failures would misreport it.
async fn exchange(plan: &Plan, h2: &H2Plan, shared: &Shared) -> Result<u16, Failure> {
    let mut retried = false;
    loop {
        let conn = current(plan, h2, shared).await?;
        let result = stream(plan, h2, &conn).await;
        let Err(StreamError::H2(e)) = result else {
            return result.map_err(|e| match e {
                StreamError::Failure(f) => f,
                StreamError::H2(_) => Failure::Protocol,
            });
        };
        if e.is_go_away() || e.is_io() || conn.closed.get() {
            // The connection is ending: no new stream goes on it; the next one reconnects.
            conn.closed.set(true);
            let mut slot = shared.conn.borrow_mut();
            if slot
                .as_ref()
                .is_some_and(|c| Rc::ptr_eq(&c.closed, &conn.closed))
            {
                *slot = None;
            }
        }
        let refused = e.is_remote()
            && ((e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR))
                || e.reason() == Some(h2::Reason::REFUSED_STREAM));
        if refused && !retried {
            retried = true;
            continue;
        }
        return Err(map_error(&e));
    }
}

enum StreamError {
    Failure(Failure),
    H2(h2::Error),
}

impl From<Failure> for StreamError {
    fn from(f: Failure) -> StreamError {
        StreamError::Failure(f)
    }
}

impl From<h2::Error> for StreamError {
    fn from(e: h2::Error) -> StreamError {
        StreamError::H2(e)
    }
}

async fn stream(plan: &Plan, h2: &H2Plan, conn: &H2Conn) -> Result<u16, StreamError> {
    let at = monoio::time::Instant::from_std(Instant::now() + plan.timeout);
    let Ok(ready) = monoio::time::timeout_at(at, conn.send.clone().ready()).await else {
        return Err(Failure::Timeout.into());
    };
    let mut send = ready?;
    let end = h2.body.is_empty();
    let (response, mut body_tx) = send.send_request(h2.request()?, end)?;
    if !end {
        body_tx.send_data(h2.body.clone(), true)?;
    }
    let Ok(response) = monoio::time::timeout_at(at, response).await else {
        return Err(Failure::Timeout.into());
    };
    let response = response?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    loop {
        match monoio::time::timeout_at(at, body.data()).await {
            Ok(None) => return Ok(status),
            Ok(Some(chunk)) => {
                let chunk = chunk?;
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(_) => return Err(Failure::Timeout.into()),
        }
    }
}
