//! Sending on an HTTP/2 stream under flow control: data goes out only as the peer grants
//! window, so a slow reader slows the sender instead of growing a buffer.

use std::future::poll_fn;

use bytes::Bytes;
use h2::SendStream;

use crate::exchange::watchdog::Activity;

/// Why sending data to a peer stopped.
#[derive(Debug)]
pub(crate) enum SendFail {
    Reset,
}

/// Sends `data` as the peer's flow-control window allows, stamping `activity` as window is
/// granted (a peer that grants none leaves it unstamped for the idle watchdog).
pub(crate) async fn send_all(
    s: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    activity: &Activity,
) -> Result<(), SendFail> {
    if data.is_empty() {
        if end {
            s.send_data(data, true).map_err(|_| SendFail::Reset)?;
        }
        return Ok(());
    }
    while !data.is_empty() {
        s.reserve_capacity(data.len());
        let granted = match poll_fn(|cx| s.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            _ => return Err(SendFail::Reset),
        };
        if granted == 0 {
            continue;
        }
        activity.stamp();
        let chunk = data.split_to(granted.min(data.len()));
        s.send_data(chunk, end && data.is_empty())
            .map_err(|_| SendFail::Reset)?;
    }
    Ok(())
}
