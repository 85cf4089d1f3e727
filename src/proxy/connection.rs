//! One accepted downstream connection, from the TCP accept to its codec.
//!
//! The phases: TLS handshake when the listener terminates TLS (SNI picks the certificate, ALPN
//! picks the protocol), then codec selection: ALPN `h2`, `codec_type: HTTP2`, or, for
//! `codec_type: AUTO` on a plain listener, the HTTP/2 connection preface seen in the first bytes
//! (h2c with prior knowledge). Everything else is HTTP/1.1. The bytes read while looking for the
//! preface are handed to the chosen codec, so nothing the client sent is lost.

use std::net::SocketAddr;
use std::rc::Rc;

use monoio::net::TcpStream;

use crate::config::CodecType;
use crate::proxy::h2_downstream::ConnCtx;
use crate::proxy::io::{read_append_until, IoFail};
use crate::proxy::worker::Worker;
use crate::stats::{HttpStat, ListenerStat};
use crate::tls::handshake::HandshakeError;
use crate::transport::Transport;

/// The client connection preface of RFC 9113 §3.4.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Http1,
    Http2,
}

/// Serves one accepted connection until it closes.
pub async fn serve(w: &Rc<Worker>, listener: usize, tcp: TcpStream, peer: SocketAddr) {
    let local = tcp.local_addr().unwrap_or(peer);
    let Some(listener_cfg) = w.shared.config.listeners.get(listener) else {
        return;
    };
    let hcm = &listener_cfg.hcm;
    // The borrow ends here: the handshake holds its own Arc to the snapshot it started with.
    let tls = w.tls.borrow().listener(listener);
    let mut stream = match tls {
        None => Transport::Plain(tcp),
        // Boxed here and below: a future that runs once per connection (the handshake, the
        // HTTP/2 connection) would otherwise be inlined into every connection's task, HTTP/1.1
        // keep-alive ones included, and an idle connection's memory is its task's size.
        Some(tls) => match Box::pin(handshake(w, listener, &tls, tcp)).await {
            Some(s) => s,
            None => return,
        },
    };
    let _ssl_active = stream.is_tls().then(|| SslActive::new(w, listener));
    let mut initial = Vec::with_capacity(super::h1_downstream::IDLE_READ_BYTES);
    let codec = match (hcm.codec_type, stream.alpn().as_deref()) {
        (CodecType::Http1, _) => Codec::Http1,
        (CodecType::Http2, _) => Codec::Http2,
        (CodecType::Auto, Some(b"h2")) => Codec::Http2,
        (CodecType::Auto, Some(_)) => Codec::Http1,
        (CodecType::Auto, None) => {
            // The first bytes are due within request_headers_timeout of the accept (and the
            // idle timeout): a connection that never speaks is closed then.
            let now = std::time::Instant::now();
            let due = [hcm.request_headers_timeout, hcm.idle_timeout]
                .into_iter()
                .filter(|t| !t.is_zero())
                .min()
                .map(|t| now + t);
            match sniff_preface(w, listener, &mut stream, &mut initial, due).await {
                Some(codec) => codec,
                None => return,
            }
        }
    };
    if let Some(hs) = w.stats().http.get(listener) {
        let stat = match codec {
            Codec::Http1 => HttpStat::DownstreamCxHttp1Total,
            Codec::Http2 => HttpStat::DownstreamCxHttp2Total,
        };
        hs.inc(w.index, stat);
    }
    match codec {
        Codec::Http1 => {
            super::http1_conn::serve(w, listener, stream, peer, local, initial).await;
        }
        Codec::Http2 => {
            let ctx = Rc::new(ConnCtx {
                listener,
                peer,
                local,
                peer_ip: peer.ip().to_string().into_bytes(),
                tls: stream.is_tls(),
            });
            let handle = |req, respond, open| {
                let (w, ctx) = (w.clone(), ctx.clone());
                async move {
                    let _open = open;
                    super::h2_conn::serve_stream(&w, &ctx, req, respond).await;
                }
            };
            Box::pin(crate::http2::server::serve(
                w, listener, stream, peer, initial, handle,
            ))
            .await;
        }
    }
}

/// Keeps `downstream_cx_ssl_active` honest however the connection ends.
struct SslActive<'a> {
    w: &'a Worker,
    listener: usize,
}

impl<'a> SslActive<'a> {
    fn new(w: &'a Worker, listener: usize) -> Self {
        if let Some(hs) = w.stats().http.get(listener) {
            hs.inc(w.index, HttpStat::DownstreamCxSslTotal);
            hs.inc(w.index, HttpStat::DownstreamCxSslActive);
        }
        SslActive { w, listener }
    }
}

impl Drop for SslActive<'_> {
    fn drop(&mut self) {
        if let Some(hs) = self.w.stats().http.get(self.listener) {
            hs.dec(self.w.index, HttpStat::DownstreamCxSslActive);
        }
    }
}

/// The TLS handshake of a TLS listener's connection, counted in the listener's `ssl.*` stats.
/// `None` when it failed (the connection is then closed).
async fn handshake(
    w: &Rc<Worker>,
    listener: usize,
    tls: &crate::tls::server::ListenerTls,
    tcp: TcpStream,
) -> Option<Transport> {
    let ls = w.stats().listeners.get(listener);
    let bump = |s: ListenerStat| {
        if let Some(ls) = ls {
            ls.inc(w.index, s);
        }
    };
    match crate::tls::server::accept(tls, tcp).await {
        Ok((stream, negotiated)) => {
            bump(ListenerStat::SslHandshake);
            // Ringway never asks for client certificates.
            bump(ListenerStat::SslNoCertificate);
            if negotiated.resumed {
                bump(ListenerStat::SslSessionReused);
            }
            match negotiated.version {
                Some(rustls::ProtocolVersion::TLSv1_3) => bump(ListenerStat::SslVersionTls13),
                Some(rustls::ProtocolVersion::TLSv1_2) => bump(ListenerStat::SslVersionTls12),
                _ => {}
            }
            Some(Transport::ServerTls(Box::new(stream)))
        }
        Err(e) => {
            match &e {
                HandshakeError::TimedOut => {
                    bump(ListenerStat::DownstreamCxTransportSocketConnectTimeout)
                }
                HandshakeError::NoChain => bump(ListenerStat::NoFilterChainMatch),
                // A client that connects and leaves (a port probe) is no TLS error.
                HandshakeError::Closed => {}
                HandshakeError::Io(_) | HandshakeError::Tls(_) | HandshakeError::Verify(_) => {
                    bump(ListenerStat::SslConnectionError)
                }
            }
            debug!("listener {listener}: {e}");
            None
        }
    }
}

/// Reads until the first bytes either are the HTTP/2 preface or cannot become it. `None` when
/// the client closed or went idle before sending anything decisive.
async fn sniff_preface(
    w: &Rc<Worker>,
    listener: usize,
    stream: &mut Transport,
    buf: &mut Vec<u8>,
    idle: Option<std::time::Instant>,
) -> Option<Codec> {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Some(Codec::Http1);
        }
        if n == H2_PREFACE.len() {
            return Some(Codec::Http2);
        }
        let room = (buf.capacity() - buf.len()).max(H2_PREFACE.len());
        let (res, b) = read_append_until(stream, std::mem::take(buf), room, idle).await;
        *buf = b;
        match res {
            Ok(n) => {
                if let Some(hs) = w.stats().http.get(listener) {
                    hs.add(w.index, HttpStat::DownstreamCxRxBytesTotal, n as u64);
                }
            }
            Err(IoFail::TimedOut) => {
                if let Some(hs) = w.stats().http.get(listener) {
                    hs.inc(w.index, HttpStat::DownstreamRqHeaderTimeout);
                }
                return None;
            }
            Err(IoFail::Eof) | Err(IoFail::Io(_)) => return None,
        }
    }
}
