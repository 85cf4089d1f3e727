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

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::io::{CancelableAsyncReadRent, CancelableAsyncWriteRentExt, Canceller};

use crate::net::{self, Stream};

use crate::h1::{ResponseParser, Step, MAX_HEAD};
use crate::plan::{count_unsent, record_outcome, Failure, Pacing, Plan};
use crate::report::Recorder;

/// Initial read buffer; grows (rarely) up to what a maximal head needs.
const READ_BUF: usize = 16 * 1024;

struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    parser: ResponseParser,
    canceller: Canceller,
}

/// Run one connection until the plan ends; returns what it observed in the measured window.
pub async fn run(plan: Rc<Plan>, mut pacing: Pacing) -> Recorder {
    if let Some(h2) = plan.h2.clone() {
        return crate::h2conn::run(plan, Rc::new(h2), pacing).await;
    }
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
        let result = match conn.as_mut() {
            Some(c) => exchange(c, &plan).await,
            None => match connect(&plan).await {
                Ok(c) => exchange(conn.insert(c), &plan).await,
                Err(f) => Err(f),
            },
        };
        let result = match result {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    conn = None;
                }
                Ok(status)
            }
            Err(f) => {
                conn = None;
                Err(f)
            }
        };
        let connect_failed = matches!(result, Err(Failure::Connect));
        record_outcome(&plan, &mut rec, due, start, result);
        if connect_failed {
            // Do not spin on a refusing server; the schedule keeps its pace anyway.
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    rec
}

async fn connect(plan: &Plan) -> Result<Conn, Failure> {
    let stream = net::connect(plan.addr, plan.tls.as_ref(), Instant::now() + plan.timeout)
        .await
        .map_err(|()| Failure::Connect)?;
    Ok(Conn {
        stream,
        rbuf: Vec::with_capacity(READ_BUF),
        parser: ResponseParser::new(plan.head_request),
        canceller: Canceller::new(),
    })
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
    write_request(c, Rc::clone(&plan.request), deadline).await?;
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
        match read_more(c, deadline).await? {
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

/// Write the whole request before `deadline`.
async fn write_request(c: &mut Conn, req: Rc<Vec<u8>>, deadline: Instant) -> Result<(), Failure> {
    let res = match &mut c.stream {
        Stream::Plain(tcp) => {
            // Plain TCP: cancel the kernel operation at the deadline (no op outlives the conn).
            let handle = c.canceller.handle();
            let write = CancelableAsyncWriteRentExt::write_all(tcp, req, handle);
            let ((res, _), timed_out) = with_deadline(write, deadline, &mut c.canceller).await;
            if timed_out {
                return Err(Failure::Timeout);
            }
            res
        }
        Stream::Tls(tls) => {
            // TLS uses owned buffers: dropping the future at the deadline is safe, and the
            // connection is discarded after a timeout anyway.
            let at = monoio::time::Instant::from_std(deadline);
            match monoio::time::timeout_at(at, tls.write_all(req)).await {
                Ok((res, _)) => res,
                Err(_) => return Err(Failure::Timeout),
            }
        }
    };
    res.map(|_| ()).map_err(|_| Failure::Reset)
}

/// One read into the spare capacity of the read buffer before `deadline`.
async fn read_more(c: &mut Conn, deadline: Instant) -> Result<std::io::Result<usize>, Failure> {
    let buf = std::mem::take(&mut c.rbuf);
    let (len, cap) = (buf.len(), buf.capacity());
    match &mut c.stream {
        Stream::Plain(tcp) => {
            let handle = c.canceller.handle();
            let read = tcp.cancelable_read(buf.slice_mut(len..cap), handle);
            let ((res, slice), timed_out) = with_deadline(read, deadline, &mut c.canceller).await;
            c.rbuf = slice.into_inner();
            if timed_out {
                return Err(Failure::Timeout);
            }
            Ok(res)
        }
        Stream::Tls(tls) => {
            let at = monoio::time::Instant::from_std(deadline);
            match monoio::time::timeout_at(at, tls.read(buf.slice_mut(len..cap))).await {
                Ok((res, slice)) => {
                    c.rbuf = slice.into_inner();
                    Ok(res)
                }
                // The buffer went with the dropped read; the connection is discarded.
                Err(_) => Err(Failure::Timeout),
            }
        }
    }
}
