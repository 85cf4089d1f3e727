#!/usr/bin/env python3
"""Liveness probe: requests in a loop on one port while something else abuses it.

Usage: h2_liveness.py --port P [--host H] [--tls] [--proto h2|h1] [--path /] [--duration S]
                      [--request-timeout S] [--min-requests N]

Sends GET --path over a kept-alive connection (HTTP/2 with prior knowledge, TLS+ALPN h2 with
--tls, or HTTP/1.1 with --proto h1), one request at a time, reconnecting after any failure. It
runs until --duration seconds pass or, without --duration, until its standard input closes (so a
test can start it, run an attack, then close the pipe). A request counts as a success when a 2xx
response arrives complete within --request-timeout; anything else (connect error, reset, GOAWAY
before the answer, timeout, non-2xx) is a failure, and the first few are described in `errors`.

Prints one JSON line: {"successes", "failures", "errors": [...], "reconnects",
"max_latency_ms", "elapsed_s"}. Exits 0 when there were no failures and at least --min-requests
successes (default 1), 2 otherwise, 1 when arguments are bad.
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2util  # noqa: E402


class H2Client:
    """Raw frames (h2util.RawH2) rather than the h2 library: a graceful GOAWAY (NO_ERROR, our
    stream at or below last_stream_id) still lets the in-flight response finish, which h2's
    state machine refuses to process once it has seen the GOAWAY."""

    def __init__(self, host, port, tls, timeout):
        self.c = h2util.RawH2(host, port, tls=tls, send_timeout=timeout, connect_timeout=timeout)
        self.timeout = timeout
        self.next_sid = 1

    def get(self, path):
        c = self.c
        if c.goaway is not None:
            raise GoingAway()
        sid = self.next_sid
        self.next_sid += 2
        if not c.get(sid, path):
            raise ConnectionError("send failed: %s" % c.send_error)
        done = c.wait(lambda: sid in c.ended or sid in c.rst or (
            c.goaway is not None and c.goaway["last_stream_id"] < sid), self.timeout)
        if sid in c.rst:
            raise ConnectionError("stream reset: %s" % c.rst[sid])
        if sid in c.ended and sid in c.status:
            return c.status[sid]
        if c.goaway is not None and c.goaway["last_stream_id"] < sid:
            if c.goaway["error"] == "NO_ERROR":
                raise GoingAway()  # not processed: safe to retry on a new connection
            raise ConnectionError("GOAWAY %s before the response" % c.goaway["error"])
        if c.closed:
            raise ConnectionError("connection closed before the response ended (%s)" % c.close_reason)
        if not done:
            raise ConnectionError("no complete response within %.1fs" % self.timeout)
        raise ConnectionError("response ended without a status")

    def close(self):
        self.c.close()


class GoingAway(Exception):
    """The server is closing the connection gracefully and did not take this request."""


class H1Client:
    def __init__(self, host, port, tls, timeout):
        self.sock = h2util.connect(host, port, tls=tls, timeout=timeout, alpn=("http/1.1",)) if tls else \
            socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.host = "%s:%d" % (host, port)
        self.buf = b""
        self.done = False  # the server said it closes after this response

    def get(self, path):
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, self.host)).encode())
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = None
        self.done = lines[0].startswith(b"HTTP/1.0")
        for line in lines[1:]:
            n, _, v = line.partition(b":")
            if n.strip().lower() == b"content-length":
                length = int(v.strip())
            if n.strip().lower() == b"connection" and v.strip().lower() == b"close":
                self.done = True
            if n.strip().lower() == b"transfer-encoding":
                raise ConnectionError("chunked responses are not supported by this probe")
        if length is None:
            raise ConnectionError("response without content-length")
        while len(self.buf) < length:
            self._more()
        self.buf = self.buf[length:]
        return status

    def _more(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("connection closed before the response ended")
        self.buf += d

    def close(self):
        self.sock.close()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tls", action="store_true")
    p.add_argument("--proto", choices=["h2", "h1"], default="h2")
    p.add_argument("--path", default="/")
    p.add_argument("--duration", type=float, default=None)
    p.add_argument("--request-timeout", type=float, default=5.0)
    p.add_argument("--min-requests", type=int, default=1)
    a = p.parse_args()

    stop = threading.Event()
    if a.duration is None:
        def watch_stdin():
            sys.stdin.read()
            stop.set()
        threading.Thread(target=watch_stdin, daemon=True).start()
    else:
        threading.Timer(a.duration, stop.set).start()

    cls = H2Client if a.proto == "h2" else H1Client
    t0 = time.monotonic()
    ok = fail = reconnects = 0
    errors = []
    max_lat = 0.0
    client = None
    while not stop.is_set():
        start = time.monotonic()
        try:
            if client is None:
                client = cls(a.host, a.port, a.tls, a.request_timeout)
            try:
                status = client.get(a.path)
            except GoingAway:
                client.close()
                client = cls(a.host, a.port, a.tls, a.request_timeout)
                reconnects += 1
                status = client.get(a.path)
            if getattr(client, "done", False):
                client.close()
                client = None
                reconnects += 1
            if not 200 <= status < 300:
                raise ConnectionError("status %d" % status)
            ok += 1
            if ok == 1:
                # Tells the harness the client is up, so an attack starts while it is running.
                print("first-ok", file=sys.stderr, flush=True)
        except Exception as e:  # every failure is counted and described, then we reconnect
            fail += 1
            if len(errors) < 10:
                errors.append("%.3fs: %s: %s" % (start - t0, type(e).__name__, e))
            if client is not None:
                client.close()
                client = None
            reconnects += 1
            time.sleep(0.05)
        max_lat = max(max_lat, time.monotonic() - start)
    if client is not None:
        client.close()
    h2util.emit({
        "successes": ok,
        "failures": fail,
        "errors": errors,
        "reconnects": reconnects,
        "max_latency_ms": round(max_lat * 1000, 1),
        "elapsed_s": round(time.monotonic() - t0, 3),
    })
    return 0 if fail == 0 and ok >= a.min_requests else 2


if __name__ == "__main__":
    sys.exit(main())
