#!/usr/bin/env python3
"""Holds many idle client connections open against a proxy, for bench/conn-memory.sh.

Usage: conn_hold.py --port P --count N --mode h1|h2c [--path /]

Opens N connections. In h1 mode each sends one keep-alive GET and reads its response, so the
connection has served a request and sits idle in keep-alive. In h2c mode each sends the HTTP/2
preface and SETTINGS, one GET on stream 1, and reads the response. Then it prints "READY n_ok"
on stdout and waits for a line on stdin before closing everything and printing "CLOSED".
"""

import argparse
import selectors
import socket
import sys

import hpack
from hyperframe.frame import Frame, HeadersFrame, SettingsFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h1_request(path):
    return ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode()


def h2_request(path, port):
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1:%d" % port), (":path", path)])
    h = HeadersFrame(1, block)
    h.flags.add("END_HEADERS")
    h.flags.add("END_STREAM")
    return PREFACE + SettingsFrame(0).serialize() + h.serialize()


def answered(mode, data):
    if mode == "h1":
        # Head plus a short body: done once the head ended and something followed or
        # content-length 0; the backend's body is a few bytes, so wait for the blank line + 1.
        i = data.find(b"\r\n\r\n")
        return i >= 0 and len(data) > i + 4
    # h2: a HEADERS frame (type 1) on stream 1 arrived.
    off = 0
    while off + 9 <= len(data):
        f, length = Frame.parse_frame_header(memoryview(data[off:off + 9]))
        if f.type == 0x1 and f.stream_id == 1:
            return True
        off += 9 + length
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--mode", choices=["h1", "h2c"], required=True)
    p.add_argument("--path", default="/")
    a = p.parse_args()
    sel = selectors.DefaultSelector()
    socks = []
    bufs = {}
    batch = 200
    ok = 0
    for start in range(0, a.count, batch):
        pending = []
        for _ in range(min(batch, a.count - start)):
            s = socket.create_connection((a.host, a.port), timeout=10)
            s.sendall(h1_request(a.path) if a.mode == "h1" else h2_request(a.path, a.port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
            pending.append(s)
            socks.append(s)
        waiting = set(pending)
        while waiting:
            events = sel.select(timeout=10)
            if not events:
                break
            for key, _ in events:
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    waiting.discard(s)
                    sel.unregister(s)
                    continue
                bufs[s] += chunk
                if s in waiting and answered(a.mode, bufs[s]):
                    waiting.discard(s)
                    sel.unregister(s)
                    ok += 1
        for s in waiting:
            sel.unregister(s)
    bufs.clear()
    sys.stdout.write("READY %d\n" % ok)
    sys.stdout.flush()
    sys.stdin.readline()
    for s in socks:
        s.close()
    sys.stdout.write("CLOSED\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
