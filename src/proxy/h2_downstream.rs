//! The downstream side of an HTTP/2 exchange: the connection a stream belongs to, the stream's
//! request head as the router and access log read it, and local replies on the stream.
//!
//! Shared by the per-stream entry point (`h2_conn.rs`) and the stream forwarder
//! (`stream_forward.rs`); the codec driver (`http2::server`) knows none of it.

use std::net::SocketAddr;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::Reason;
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};

use crate::config::HttpConnectionManager;
use crate::exchange::request_log::RequestLog;
use crate::http1::HeaderLookup;
use crate::proxy::flags::ResponseFlags;

/// What every stream of one connection shares.
pub struct ConnCtx {
    pub listener: usize,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub peer_ip: Vec<u8>,
    pub tls: bool,
}

/// The request's pseudo-headers and headers as the router and access log read them.
pub struct StreamHead<'a> {
    pub parts: &'a Parts,
    pub authority: &'a [u8],
    pub path: &'a [u8],
    pub scheme: &'a [u8],
}

impl HeaderLookup for StreamHead<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        match name {
            ":method" => Some(self.parts.method.as_str().as_bytes()),
            ":path" => Some(self.path),
            ":authority" | "host" => Some(self.authority),
            ":scheme" => Some(self.scheme),
            _ => self.parts.headers.get(name).map(|v| v.as_bytes()),
        }
    }
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map(|v| v.as_bytes());
    crate::proxy::grpc::is_grpc_content_type(content_type)
}

/// Answers the stream locally. gRPC requests get Envoy's gRPC-shaped reply: HTTP 200 carrying
/// the mapped `grpc-status` and the reply text as `grpc-message` (trailers-only).
pub fn local_reply(
    respond: &mut SendResponse<Bytes>,
    hcm: &HttpConnectionManager,
    grpc: bool,
    status: u16,
    body: &[u8],
    extra: &[(&[u8], &[u8])],
    log: &mut RequestLog<'_>,
) {
    let mut builder = Response::builder();
    let code = if grpc {
        let mut fields = Vec::with_capacity(3);
        crate::proxy::grpc::local_reply_headers(status, body, &mut fields);
        for (name, value) in fields {
            builder = builder.header(name, value);
        }
        200
    } else {
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "text/plain");
        }
        builder = builder.header(http::header::CONTENT_LENGTH, body.len());
        status
    };
    builder = builder
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY))
        .header(http::header::SERVER, hcm.server_name.as_str());
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    let Ok(resp) = builder.body(()) else {
        respond.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    log.status = code;
    let end = grpc || body.is_empty();
    match respond.send_response(resp, end) {
        Ok(mut send) if !end => {
            // Local bodies are small; h2 buffers them within the stream's send buffer.
            if send.send_data(Bytes::copy_from_slice(body), true).is_ok() {
                log.bytes_sent += body.len() as u64;
            }
        }
        Ok(_) => {}
        Err(_) => log
            .flags
            .insert(ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION),
    }
}
