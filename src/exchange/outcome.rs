//! How a failed attempt is answered: Envoy's status code, response flag, reply text and the
//! cluster stat that goes with each way of failing, for every codec.

use crate::config::ClusterId;
use crate::proxy::flags::ResponseFlags;
use crate::proxy::worker::Worker;
use crate::stats::ClusterStat;

pub use super::retry::AttemptError;

/// A local reply: status, response flag and text.
pub type Reply = (u16, ResponseFlags, &'static [u8]);

/// The local reply for a failed request (Envoy's codes, flags and texts), counting the
/// cluster stat that goes with it; `None` when the client is gone and nothing can be sent.
pub fn failure_reply(w: &Worker, cluster_id: ClusterId, e: &AttemptError) -> Option<Reply> {
    let cs = w.stats().clusters.get(cluster_id);
    let count = |stat: ClusterStat| {
        if let Some(cs) = cs {
            cs.inc(w.index, stat);
        }
    };
    Some(match e {
        AttemptError::Connect => (
            503,
            ResponseFlags::UPSTREAM_CONNECTION_FAILURE,
            b"upstream connect error or disconnect/reset before headers. reset reason: connection failure",
        ),
        AttemptError::Overflow => {
            count(ClusterStat::UpstreamCxOverflow);
            (
                503,
                ResponseFlags::UPSTREAM_OVERFLOW,
                b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            )
        }
        AttemptError::Reset { .. } | AttemptError::Refused => {
            count(ClusterStat::UpstreamRqRxReset);
            (
                502,
                ResponseFlags::UPSTREAM_CONNECTION_TERMINATION,
                b"upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            )
        }
        AttemptError::Timeout => {
            count(ClusterStat::UpstreamRqTimeout);
            (504, ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, b"upstream request timeout")
        }
        AttemptError::Protocol => {
            count(ClusterStat::UpstreamCxProtocolError);
            (502, ResponseFlags::UPSTREAM_PROTOCOL_ERROR, b"upstream protocol error")
        }
        AttemptError::BadBody => (
            400,
            ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR,
            b"malformed chunked body",
        ),
        AttemptError::Downstream => return None,
    })
}
