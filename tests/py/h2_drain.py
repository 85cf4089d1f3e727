#!/usr/bin/env python3
"""Watches one HTTP/2 connection through a drain: the shutdown notice, a stream that races it,
and the final GOAWAY.

Usage: h2_drain.py --port P --pid PID [--slow-path /delay/4000]

Opens stream 1 on the slow path (it stays in flight through the drain), starts the drain with
SIGTERM to PID (the proxy), waits for the first GOAWAY, then opens stream 3 (GET /) as a client that
raced the notice would, and reads until the connection closes or stream 1 ends after a final
GOAWAY. Prints one JSON line: {"goaways": [{last_stream_id, error, at_s}...], "status":
{stream: status}, "drain_at_s", "closed"}.
"""

import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2util  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--slow-path", default="/delay/4000")
    a = p.parse_args()
    c = h2util.RawH2(a.host, a.port)
    c.get(1, path=a.slow_path)
    c.wait(lambda: False, 0.3)
    drain_at = round(time.monotonic() - c.t0, 3)
    os.kill(a.pid, signal.SIGTERM)
    c.wait(lambda: len(c.goaways) >= 1, 5.0)
    if c.goaways and not c.closed:
        c.get(3, path="/")
        c.wait(lambda: 3 in c.ended or 3 in c.rst, 10.0)
    c.wait(lambda: 1 in c.ended and len(c.goaways) >= 2, 15.0)
    h2util.emit({
        "goaways": c.goaways,
        "status": {str(k): v for k, v in c.status.items()},
        "rst": {str(k): v for k, v in c.rst.items()},
        "drain_at_s": drain_at,
        "closed": c.closed,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
