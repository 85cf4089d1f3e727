#!/usr/bin/env python3
"""One HTTP/2 request over raw frames, with request trailers if asked (curl cannot send those).

Usage: h2_request.py --port P [--host H] [--tls] [--method GET] [--path /] [--authority A]
                     [-H name:value ...] [--body TEXT | --body-size N] [--trailer name:value ...]
                     [--timeout S]

The body (TEXT, or N bytes of the 0..250 pattern) goes in DATA frames; with --trailer the
request ends with a trailing HEADERS frame, else the last DATA frame carries END_STREAM. Bodies
are limited to 65535 bytes (the initial flow-control window: this client does not wait for
WINDOW_UPDATE). Prints one JSON line: {"status", "headers": {...}, "trailers": {...},
"body_len", "body_sha256", "body" (text, when under 64 KiB), "rst", "goaway", "ended",
"server_settings": {id: value} as the server's SETTINGS frame gave them}.
Exits 0 when a response ended (whatever its status), 2 when none did, 1 on bad arguments or no
connection.
"""

import argparse
import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hyperframe.frame import DataFrame  # noqa: E402

import h2util  # noqa: E402


def pair(s):
    name, sep, value = s.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected name:value, got %r" % s)
    return (name.strip().lower(), value.strip())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--method", default="GET")
    p.add_argument("--path", default="/")
    p.add_argument("--authority", default=None)
    p.add_argument("-H", dest="headers", type=pair, action="append", default=[])
    p.add_argument("--body", default=None)
    p.add_argument("--body-size", type=int, default=None)
    p.add_argument("--trailer", type=pair, action="append", default=[])
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    body = b""
    if a.body is not None:
        body = a.body.encode()
    elif a.body_size is not None:
        body = bytes(i % 251 for i in range(a.body_size))
    if len(body) > 65535:
        sys.stderr.write("h2_request: bodies over 65535 bytes are not supported\n")
        return 1
    try:
        c = h2util.RawH2(a.host, a.port, tls=a.tls)
    except OSError as e:
        h2util.emit({"error": "connect: %s" % e})
        return 1
    c.keep_bodies = True
    head = c.request_head(a.path, authority=a.authority, method=a.method) + a.headers
    has_body = bool(body) or bool(a.trailer)
    c.request_headers(1, head, end_stream=not has_body)
    if body:
        chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
        for i, ch in enumerate(chunks):
            last = i == len(chunks) - 1 and not a.trailer
            c.queue_frame(DataFrame(1, ch, flags=["END_STREAM"] if last else []))
    if a.trailer:
        c.request_headers(1, a.trailer, end_stream=True, flush=False)
    c.flush()
    c.wait(lambda: 1 in c.ended or 1 in c.rst, a.timeout)
    data = bytes(c.bodies.get(1, b""))
    r = {
        "status": c.status.get(1),
        "headers": dict(c.headers.get(1, [])),
        "trailers": dict(c.trailers.get(1, [])),
        "body_len": len(data),
        "body_sha256": hashlib.sha256(data).hexdigest(),
        "body": data.decode("utf-8", "replace") if len(data) < 65536 else None,
        "rst": c.rst.get(1),
        "goaway": c.goaway,
        "ended": 1 in c.ended,
        "server_settings": {str(k): v for k, v in c.server_settings.items()},
    }
    c.close()
    h2util.emit(r)
    return 0 if r["ended"] else 2


if __name__ == "__main__":
    sys.exit(main())
