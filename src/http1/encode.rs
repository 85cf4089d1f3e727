//! STUB (replaced by the http1 work): signatures are the contract.

use super::parse::Version;

pub fn reason_phrase(_status: u16) -> &'static str {
    unimplemented!()
}
/// `HTTP/1.1 200 OK\r\n`
pub fn write_status_line(_out: &mut Vec<u8>, _version: Version, _status: u16) {
    unimplemented!()
}
/// `name: value\r\n`
pub fn write_header(_out: &mut Vec<u8>, _name: &[u8], _value: &[u8]) {
    unimplemented!()
}
/// Decimal without allocating.
pub fn write_u64(_out: &mut Vec<u8>, _n: u64) {
    unimplemented!()
}
/// One chunk: size line, data, CRLF (nothing for empty data).
pub fn write_chunk(_out: &mut Vec<u8>, _data: &[u8]) {
    unimplemented!()
}
/// `0\r\n\r\n`
pub fn write_last_chunk(_out: &mut Vec<u8>) {
    unimplemented!()
}
/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the usual de-facto ones): never forwarded.
pub fn is_hop_by_hop(_name: &[u8]) -> bool {
    unimplemented!()
}
