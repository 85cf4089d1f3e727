//! One keep-alive connection's request loop: wait until the next request is due, send the
//! precomputed request, frame the response, record.
//!
//! Latency rule (open loop, no coordinated omission): a request's clock starts at its
//! scheduled time whenever the connection was still busy with the previous response at that
//! time, because the wait is the server's doing and must show in the tail. When the connection
//! was idle and the generator simply woke up late (monoio's timer has 1 ms resolution), the
//! clock starts at the wake-up instead, and that lateness is recorded separately as "send
//! lag" so an overloaded generator is visible rather than blamed on the server.
//!
//! Each connection owns its recorder, buffers and canceller: nothing on this path is shared
//! or locked, and a request costs no allocation (the request bytes are an `Rc` clone, the read
//! buffer is reused; only error paths allocate).

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{CancelableAsyncReadRent, CancelableAsyncWriteRentExt, Canceller};
use monoio::net::TcpStream;

use crate::h1::{ResponseParser, Step, MAX_HEAD};
use crate::report::Recorder;
use crate::schedule::Schedule;
use crate::timeline::Timeline;

/// Initial read buffer; grows (rarely) up to what a maximal head needs.
const READ_BUF: usize = 16 * 1024;

/// What every connection of a run shares (read-only).
#[derive(Debug)]
pub struct Plan {
    pub addr: std::net::SocketAddr,
    pub request: Rc<Vec<u8>>,
    pub head_request: bool,
    pub timeout: Duration,
    /// Time zero of every schedule.
    pub t0: Instant,
    /// Requests due before this are warmup: sent, not recorded.
    pub measure_from: Instant,
    /// No request due at or after this is sent.
    pub end: Instant,
    /// Hard stop: requests still waiting at this point are counted as unsent.
    pub deadline: Instant,
    /// This thread's time-resolved results. A `RefCell` on a single-threaded runtime: no lock,
    /// and borrows never cross an await.
    pub timeline: RefCell<Timeline>,
    /// This thread's live counters for the progress line (relaxed atomics only it writes).
    pub live: std::sync::Arc<crate::progress::Live>,
}

/// Load model of one connection.
#[derive(Debug)]
pub enum Pacing {
    Open(Schedule),
    /// Next request as soon as the previous response ends.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Connect,
    Reset,
    Timeout,
    Protocol,
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    parser: ResponseParser,
    canceller: Canceller,
}

/// Run one connection until the plan ends; returns what it observed in the measured window.
pub async fn run(plan: Rc<Plan>, mut pacing: Pacing) -> Recorder {
    let mut rec = Recorder::new();
    // Connect up front so the first requests do not all pay the handshake at once.
    let mut conn = connect(&plan).await.ok();
    loop {
        let now = Instant::now();
        let (due, start) = match &mut pacing {
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
                let start = if now < due {
                    monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
                    let woke = Instant::now();
                    if due >= plan.measure_from {
                        rec.record_send_lag(woke - due);
                    }
                    woke
                } else {
                    // Busy (or behind) when it fell due: the wait counts.
                    due
                };
                (due, start)
            }
            Pacing::Closed => {
                if now >= plan.end {
                    break;
                }
                (now, now)
            }
        };
        let measured = due >= plan.measure_from;
        let result = match conn.as_mut() {
            Some(c) => exchange(c, &plan).await,
            None => match connect(&plan).await {
                Ok(c) => exchange(conn.insert(c), &plan).await,
                Err(f) => Err(f),
            },
        };
        if !matches!(result, Err(Failure::Connect)) {
            plan.live.sent();
            if measured {
                rec.sent += 1;
            }
        }
        let offset = due.saturating_duration_since(plan.measure_from);
        match result {
            Ok((status, keep_alive)) => {
                let us = Instant::now()
                    .saturating_duration_since(start)
                    .as_micros()
                    .min(u128::from(u64::MAX)) as u64;
                plan.live.response(us, (200..300).contains(&status));
                if measured {
                    rec.completed += 1;
                    let latency = Instant::now().saturating_duration_since(start);
                    rec.record_latency(latency);
                    let ok = (200..300).contains(&status);
                    if !ok {
                        *rec.errors.status.entry(status).or_default() += 1;
                    }
                    plan.timeline.borrow_mut().record_response(
                        offset,
                        latency.as_micros().min(u128::from(u64::MAX)) as u64,
                        ok,
                    );
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Err(f) => {
                conn = None;
                plan.live.failure();
                if measured {
                    plan.timeline.borrow_mut().record_failure(offset);
                    match f {
                        Failure::Connect => rec.errors.connect += 1,
                        Failure::Reset => rec.errors.reset += 1,
                        Failure::Timeout => rec.errors.timeout += 1,
                        Failure::Protocol => rec.errors.protocol += 1,
                    }
                }
                if f == Failure::Connect {
                    // Do not spin on a refusing server; the schedule keeps its pace anyway.
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
    }
    rec
}

/// Requests of the measured window the run ended without sending.
fn count_unsent(s: &mut Schedule, plan: &Plan) -> u64 {
    let mut n = 0;
    loop {
        let due = plan.t0 + s.peek();
        if due >= plan.end {
            return n;
        }
        s.next_due();
        if due >= plan.measure_from {
            n += 1;
        }
    }
}

async fn connect(plan: &Plan) -> Result<Conn, Failure> {
    let deadline = Instant::now() + plan.timeout;
    let fut = TcpStream::connect_addr(plan.addr);
    match monoio::time::timeout_at(monoio::time::Instant::from_std(deadline), fut).await {
        Ok(Ok(stream)) => {
            // Requests are tiny and latency-bound: never wait for Nagle.
            let _ = stream.set_nodelay(true);
            Ok(Conn {
                stream,
                rbuf: Vec::with_capacity(READ_BUF),
                parser: ResponseParser::new(plan.head_request),
                canceller: Canceller::new(),
            })
        }
        Ok(Err(_)) | Err(_) => Err(Failure::Connect),
    }
}

/// Await `fut`; at `deadline` cancel its kernel operation and wait for it to finish, so the
/// buffer comes back and no operation outlives the connection. Returns (output, timed_out).
async fn with_deadline<F: Future>(
    fut: F,
    deadline: Instant,
    canceller: &mut Canceller,
) -> (F::Output, bool) {
    let mut fut = std::pin::pin!(fut);
    match monoio::time::timeout_at(monoio::time::Instant::from_std(deadline), &mut fut).await {
        Ok(out) => (out, false),
        Err(_) => {
            *canceller = std::mem::take(canceller).cancel();
            (fut.await, true)
        }
    }
}

/// Send the request and read one full response. Ok((status, keep_alive)).
async fn exchange(c: &mut Conn, plan: &Plan) -> Result<(u16, bool), Failure> {
    let deadline = Instant::now() + plan.timeout;
    let handle = c.canceller.handle();
    let write =
        CancelableAsyncWriteRentExt::write_all(&mut c.stream, Rc::clone(&plan.request), handle);
    let ((res, _), timed_out) = with_deadline(write, deadline, &mut c.canceller).await;
    if timed_out {
        return Err(Failure::Timeout);
    }
    res.map_err(|_| Failure::Reset)?;
    loop {
        if !c.rbuf.is_empty() {
            let (used, step) = c.parser.feed(&c.rbuf).map_err(|_| Failure::Protocol)?;
            c.rbuf.drain(..used);
            if let Step::Done { status, keep_alive } = step {
                return Ok((status, keep_alive));
            }
        }
        if c.rbuf.len() == c.rbuf.capacity() {
            // Only an incomplete head stays buffered; the parser rejects heads over MAX_HEAD.
            c.rbuf.reserve(READ_BUF.min(MAX_HEAD + 1));
        }
        let buf = std::mem::take(&mut c.rbuf);
        let (len, cap) = (buf.len(), buf.capacity());
        let handle = c.canceller.handle();
        let read = c.stream.cancelable_read(buf.slice_mut(len..cap), handle);
        let ((res, slice), timed_out) = with_deadline(read, deadline, &mut c.canceller).await;
        c.rbuf = slice.into_inner();
        if timed_out {
            return Err(Failure::Timeout);
        }
        match res {
            Ok(0) => {
                return match c.parser.on_eof() {
                    Ok(Step::Done { status, .. }) => Ok((status, false)),
                    // EOF between or inside responses: the peer closed on us.
                    Ok(Step::NeedMore) | Err(_) => Err(Failure::Reset),
                };
            }
            Ok(_) => {}
            Err(_) => return Err(Failure::Reset),
        }
    }
}
