//! Downstream HTTP/2 connections: the `h2` server driven on a worker, its edge limits, and one
//! task per stream.
//!
//! The connection task owns the `h2` state machine and does nothing but accept streams, so the
//! codec is always being driven while stream tasks (spawned on the same worker) proxy their
//! requests. It also watches for the things `h2` does not handle: the [`FrameGuard`] tripping on
//! a flood (GOAWAY `ENHANCE_YOUR_CALM`, then close), and the worker draining or the connection
//! idling past `idle_timeout` with no open stream: Envoy's two-step drain, a shutdown notice
//! (`drain_notice`), `drain_timeout` of grace in which racing streams are still served, then
//! `h2`'s graceful shutdown with the final GOAWAY.
//!
//! This module only drives the codec and yields requests: what a stream's request becomes
//! (validation, routing, forwarding) is the handler the caller passes, `proxy::h2_conn`.
//!
//! [`FrameGuard`]: super::guard::FrameGuard

use std::cell::Cell;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::Request;

use super::drain_notice::Notice;
use super::io::{AbuseFlag, H2Io};
use super::{MAX_HEADER_LIST_SIZE, MAX_SEND_BUFFER};
use crate::proxy::worker::Worker;
use crate::stats::HttpStat;
use crate::transport::Transport;

enum Event {
    Stream(Box<(Request<RecvStream>, SendResponse<Bytes>)>),
    Abuse(super::guard::Abuse),
    Failed(h2::Error),
    Closed,
    Tick,
}

/// A stream's place in its connection's count of open streams (which keeps an idle connection
/// from timing out while a stream runs); given back when the stream's task drops it.
pub struct OpenStream(Rc<Cell<usize>>);

impl OpenStream {
    fn open(count: &Rc<Cell<usize>>) -> OpenStream {
        count.set(count.get() + 1);
        OpenStream(count.clone())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// h2's limit on streams reset while still waiting to be accepted; above FrameGuard's 500.
const H2_PENDING_ACCEPT_RESETS: usize = 1000;

/// How often the connection loop looks at drain state and idleness.
const TICK: Duration = Duration::from_secs(1);

/// Where a connection is in Envoy's two-step drain (started by the worker draining or by the
/// connection idling past `idle_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Open,
    /// The shutdown notice is out (or on its way); new streams are still served until the
    /// final GOAWAY at `final_at` (`drain_timeout` later).
    Noticed {
        final_at: Instant,
    },
    /// `h2`'s shutdown runs: final GOAWAY, then close once the streams are done.
    Final,
}

/// Serves one HTTP/2 connection until it closes.
///
/// Each accepted stream is handed to `handle` with an [`OpenStream`] (which the returned future
/// must hold until it ends), and the future runs as its own task; the connection waits for none
/// of them. The future is spawned as it is, not wrapped: a wrapping `async` block would hold the
/// handler's future twice over (the captured value and the one being awaited).
pub async fn serve<H, F>(
    w: &Rc<Worker>,
    listener: usize,
    stream: Transport,
    peer: SocketAddr,
    initial: Vec<u8>,
    handle: H,
) where
    H: Fn(Request<RecvStream>, SendResponse<Bytes>, OpenStream) -> F,
    F: Future<Output = ()> + 'static,
{
    let Some(hcm) = w.shared.config.listeners.get(listener).map(|l| &l.hcm) else {
        return;
    };
    let hs = w.stats().http.get(listener);
    let flag: AbuseFlag = Rc::new(Cell::new(None));
    let io = H2Io::server(stream, w.bufs.clone(), initial, flag.clone());
    let rx = io.rx_counter();
    let notice = io.notice_handle();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(hcm.http2.max_concurrent_streams)
        .initial_window_size(hcm.http2.initial_stream_window_size)
        .initial_connection_window_size(hcm.http2.initial_connection_window_size)
        .max_header_list_size(MAX_HEADER_LIST_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        // Rapid Reset is ours to stop (FrameGuard's premature-reset rule, with its stat): h2's
        // own pending-accept limit is set above the point where ours trips, so the defence
        // that fires is the one we count and test.
        .max_pending_accept_reset_streams(H2_PENDING_ACCEPT_RESETS);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(hcm.request_headers_timeout, handshake).await {
        Ok(Ok(conn)) => conn,
        _ => {
            if let Some(hs) = hs {
                hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
            }
            return;
        }
    };
    let open_streams = Rc::new(Cell::new(0usize));
    let mut idle_since = Some(Instant::now());
    let mut drain = Drain::Open;
    let mut tick = Box::pin(monoio::time::sleep(TICK));
    loop {
        let event = poll_fn(|cx| {
            if let Some(abuse) = flag.get() {
                return Poll::Ready(Event::Abuse(abuse));
            }
            match conn.poll_accept(cx) {
                Poll::Ready(Some(Ok(pair))) => return Poll::Ready(Event::Stream(Box::new(pair))),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Event::Failed(e)),
                Poll::Ready(None) => return Poll::Ready(Event::Closed),
                Poll::Pending => {}
            }
            match tick.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Event::Tick),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Stream(pair) => {
                let (req, respond) = *pair;
                idle_since = None;
                let open = OpenStream::open(&open_streams);
                monoio::spawn(handle(req, respond, open));
            }
            Event::Abuse(abuse) => {
                warn!(
                    "worker {}: closing HTTP/2 connection from {peer}: {}",
                    w.index,
                    abuse.as_str()
                );
                if let Some(hs) = hs {
                    hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
                    hs.inc(w.index, abuse.stat());
                }
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                let flush = poll_fn(|cx| conn.poll_closed(cx));
                let _ = monoio::time::timeout(Duration::from_secs(1), flush).await;
                break;
            }
            Event::Failed(e) => {
                if e.is_go_away() || e.reason().is_some_and(|r| r != Reason::NO_ERROR) {
                    if let Some(hs) = hs {
                        hs.inc(w.index, HttpStat::DownstreamCxProtocolError);
                    }
                }
                break;
            }
            Event::Closed => break,
            Event::Tick => {
                let now = Instant::now();
                let mut start_drain = false;
                if open_streams.get() == 0 {
                    let since = *idle_since.get_or_insert(now);
                    let idle = hcm.idle_timeout;
                    start_drain = !idle.is_zero() && now.duration_since(since) >= idle;
                } else {
                    idle_since = None;
                }
                if w.draining() && drain == Drain::Open {
                    if let Some(hs) = hs {
                        hs.inc(w.index, HttpStat::DownstreamCxDrainClose);
                    }
                    start_drain = true;
                }
                if start_drain && drain == Drain::Open {
                    drain = match &notice {
                        Some(notice) if !hcm.drain_timeout.is_zero() => {
                            notice.set(Notice::Writing(0));
                            Drain::Noticed {
                                final_at: now + hcm.drain_timeout,
                            }
                        }
                        _ => {
                            conn.graceful_shutdown();
                            Drain::Final
                        }
                    };
                }
                if let Drain::Noticed { final_at } = drain {
                    if now >= final_at {
                        conn.graceful_shutdown();
                        drain = Drain::Final;
                    }
                }
                let next = match drain {
                    Drain::Noticed { final_at } => {
                        final_at.saturating_duration_since(now).min(TICK)
                    }
                    _ => TICK,
                };
                tick = Box::pin(monoio::time::sleep(next));
            }
        }
    }
    if let Some(hs) = hs {
        hs.add(w.index, HttpStat::DownstreamCxRxBytesTotal, rx.get());
    }
}
