#!/usr/bin/env python3
"""Opens HTTP/2 streams with HEADERS but no END_STREAM and then sends nothing more.

Usage: h2_stall.py --port P [--streams N] [--hold-s S] [--path /]

Starts N POST streams (HEADERS without END_STREAM, no DATA), then only reads for S seconds.
Prints one JSON line: {"statuses": {code: count}, "rst": {name: count}, "closed": bool}.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2util  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--hold-s", type=float, default=4.0)
    p.add_argument("--path", default="/")
    a = p.parse_args()
    c = h2util.RawH2(a.host, a.port)
    for i in range(a.streams):
        sid = 1 + 2 * i
        head = c.request_head(path=a.path, method="POST")
        c.request_headers(sid, head, end_stream=False, flush=False)
    c.flush()
    c.wait(lambda: False, a.hold_s)
    out = c.outcome()
    h2util.emit({"statuses": out["statuses"], "rst": out["rst"], "closed": out["closed"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
