#!/usr/bin/env python3
"""Cancels HTTP/2 requests while the upstream is still working on them.

Usage: h2_cancel.py --port P --path /delay/2000 --count N --mode close|rst [--after-ms 300]
                    [--per-conn 10]

Opens ceil(N / per-conn) connections, starts `per-conn` GET requests on each (odd stream ids),
waits --after-ms for them to reach the upstream, then either closes every socket abruptly
(`close`) or sends RST_STREAM(CANCEL) for every stream and then a GOAWAY before closing
(`rst`). Prints one JSON line: {"streams": N, "mode": M, "answered_before_cancel": K} where K
counts 200 responses that arrived before the cancel (the test expects 0: the upstream was slow;
local replies such as a 503 for an open circuit breaker do not count).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hyperframe.frame import GoAwayFrame, RstStreamFrame  # noqa: E402

import h2util  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/delay/2000")
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--per-conn", type=int, default=10)
    p.add_argument("--mode", choices=["close", "rst"], required=True)
    p.add_argument("--after-ms", type=int, default=300)
    a = p.parse_args()
    conns = []
    left = a.count
    while left > 0:
        n = min(left, a.per_conn)
        c = h2util.RawH2(a.host, a.port)
        ids = [1 + 2 * i for i in range(n)]
        for sid in ids:
            c.get(sid, path=a.path, flush=False)
        c.flush()
        conns.append((c, ids))
        left -= n
    deadline = time.time() + a.after_ms / 1000.0
    while time.time() < deadline:
        for c, _ in conns:
            c.pump(0.01)
    answered = sum(c.outcome()["statuses"].get("200", 0) for c, _ in conns)
    for c, ids in conns:
        if a.mode == "rst":
            for sid in ids:
                c.queue_frame(RstStreamFrame(sid, error_code=0x8))
            c.flush()
            c.pump(0.05)
            c.queue_frame(GoAwayFrame(0, last_stream_id=0, error_code=0))
            c.flush()
        c.close()
    h2util.emit({"streams": a.count, "mode": a.mode, "answered_before_cancel": answered})
    return 0


if __name__ == "__main__":
    sys.exit(main())
