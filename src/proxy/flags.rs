//! Envoy's response flags (`%RESPONSE_FLAGS%`): why a request ended the way it did.

/// A set of response flags. Printed in Envoy's short form, comma separated, `-` when empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFlags(pub u32);

impl ResponseFlags {
    /// No healthy upstream (UH).
    pub const NO_HEALTHY_UPSTREAM: ResponseFlags = ResponseFlags(1);
    /// Upstream request timeout (UT).
    pub const UPSTREAM_REQUEST_TIMEOUT: ResponseFlags = ResponseFlags(1 << 1);
    /// Local reset (LR).
    pub const LOCAL_RESET: ResponseFlags = ResponseFlags(1 << 2);
    /// Upstream remote reset (UR).
    pub const UPSTREAM_REMOTE_RESET: ResponseFlags = ResponseFlags(1 << 3);
    /// Upstream connection failure (UF).
    pub const UPSTREAM_CONNECTION_FAILURE: ResponseFlags = ResponseFlags(1 << 4);
    /// Upstream connection termination (UC).
    pub const UPSTREAM_CONNECTION_TERMINATION: ResponseFlags = ResponseFlags(1 << 5);
    /// Upstream overflow / circuit breaker (UO).
    pub const UPSTREAM_OVERFLOW: ResponseFlags = ResponseFlags(1 << 6);
    /// No route found (NR).
    pub const NO_ROUTE_FOUND: ResponseFlags = ResponseFlags(1 << 7);
    /// Upstream retry limit exceeded (URX).
    pub const UPSTREAM_RETRY_LIMIT_EXCEEDED: ResponseFlags = ResponseFlags(1 << 8);
    /// Downstream connection termination (DC).
    pub const DOWNSTREAM_CONNECTION_TERMINATION: ResponseFlags = ResponseFlags(1 << 9);
    /// Downstream protocol error (DPE).
    pub const DOWNSTREAM_PROTOCOL_ERROR: ResponseFlags = ResponseFlags(1 << 10);
    /// Upstream protocol error (UPE).
    pub const UPSTREAM_PROTOCOL_ERROR: ResponseFlags = ResponseFlags(1 << 11);
    /// No cluster found (NC).
    pub const NO_CLUSTER_FOUND: ResponseFlags = ResponseFlags(1 << 12);
    /// Stream idle timeout (SI).
    pub const STREAM_IDLE_TIMEOUT: ResponseFlags = ResponseFlags(1 << 13);
    /// Drain / overload close (DO is overload; we use it for drain-time expiry).
    pub const DRAIN_EXPIRED: ResponseFlags = ResponseFlags(1 << 14);

    const NAMES: [(ResponseFlags, &'static str); 15] = [
        (ResponseFlags::NO_HEALTHY_UPSTREAM, "UH"),
        (ResponseFlags::UPSTREAM_REQUEST_TIMEOUT, "UT"),
        (ResponseFlags::LOCAL_RESET, "LR"),
        (ResponseFlags::UPSTREAM_REMOTE_RESET, "UR"),
        (ResponseFlags::UPSTREAM_CONNECTION_FAILURE, "UF"),
        (ResponseFlags::UPSTREAM_CONNECTION_TERMINATION, "UC"),
        (ResponseFlags::UPSTREAM_OVERFLOW, "UO"),
        (ResponseFlags::NO_ROUTE_FOUND, "NR"),
        (ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED, "URX"),
        (ResponseFlags::DOWNSTREAM_CONNECTION_TERMINATION, "DC"),
        (ResponseFlags::DOWNSTREAM_PROTOCOL_ERROR, "DPE"),
        (ResponseFlags::UPSTREAM_PROTOCOL_ERROR, "UPE"),
        (ResponseFlags::NO_CLUSTER_FOUND, "NC"),
        (ResponseFlags::STREAM_IDLE_TIMEOUT, "SI"),
        (ResponseFlags::DRAIN_EXPIRED, "DO"),
    ];

    pub fn insert(&mut self, f: ResponseFlags) {
        self.0 |= f.0;
    }
    pub fn contains(self, f: ResponseFlags) -> bool {
        self.0 & f.0 == f.0 && f.0 != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Appends Envoy's short form (`UH,URX`), or `-` when empty.
    pub fn write_to(self, out: &mut Vec<u8>) {
        if self.is_empty() {
            out.push(b'-');
            return;
        }
        let mut first = true;
        for (f, name) in Self::NAMES {
            if self.contains(f) {
                if !first {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                first = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_envoy_short_names_in_order() {
        let mut f = ResponseFlags::default();
        let mut out = Vec::new();
        f.write_to(&mut out);
        assert_eq!(out, b"-");
        f.insert(ResponseFlags::UPSTREAM_RETRY_LIMIT_EXCEEDED);
        f.insert(ResponseFlags::NO_HEALTHY_UPSTREAM);
        out.clear();
        f.write_to(&mut out);
        assert_eq!(out, b"UH,URX");
    }
}
