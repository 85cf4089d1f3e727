#!/usr/bin/env python3
"""An HTTP/2 (h2c, prior knowledge) test origin built on the h2 library, one thread per connection.

Usage: h2_server.py PORT   (0 picks a free port)

| path | response |
|---|---|
| /echo | the request body; the request's trailers come back as response trailers, each name
          prefixed `x-echoed-`, plus `x-body-len` |
| /sha256 | hex SHA-256 of the request body |
| /bytes/N | N bytes (byte i is i % 251, as tests/support::pattern), with content-length |
| /trailers | body "trailers\\n" then trailers x-trailer-one: 1, x-trailer-two: 2 |
| /stats | JSON {"connections": accepted so far, "requests": so far} |
| anything else | JSON {"method", "path", "authority", "headers": [[name, value], ...]} |

Every response carries `x-upstream: h2`. Flow control is honoured both ways (large bodies wait
for WINDOW_UPDATE), so it is also a fair upstream for slow-reader tests.
Prints one JSON line {"port": P, "pid": PID} once listening; serves until killed.
"""

import hashlib
import json
import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import h2.exceptions  # noqa: E402

import h2util  # noqa: E402

PATTERN = bytes(i % 251 for i in range(251 * 1024))
STATS = {"connections": 0, "requests": 0}
LOCK = threading.Lock()


def pattern(start, n):
    out = bytearray()
    off = start % 251
    while len(out) < n:
        take = min(n - len(out), len(PATTERN) - off)
        out += PATTERN[off : off + take]
        off = 0
    return bytes(out)


class Stream:
    def __init__(self, headers):
        self.headers = [(k.decode(), v.decode()) for k, v in headers]
        h = dict(self.headers)
        self.method = h.get(":method", "")
        self.path = h.get(":path", "")
        self.authority = h.get(":authority")
        self.body = hashlib.sha256()
        self.body_len = 0
        self.echo = bytearray()
        self.trailers = []
        # Outgoing: a generator of body chunks, plus trailers to send at the end.
        self.out = None
        self.out_left = b""
        self.out_trailers = None


class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None, validate_inbound_headers=False)
        )
        self.streams = {}

    def run(self):
        self.h2.initiate_connection()
        self.flush()
        while True:
            try:
                data = self.sock.recv(262144)
            except OSError:
                return
            if not data:
                return
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                self.flush()
                return
            for ev in events:
                self.on_event(ev)
            self.pump()
            self.flush()

    def flush(self):
        out = self.h2.data_to_send()
        if out:
            self.sock.sendall(out)

    def on_event(self, ev):
        if isinstance(ev, h2.events.RequestReceived):
            self.streams[ev.stream_id] = Stream(ev.headers)
            with LOCK:
                STATS["requests"] += 1
            # A request without a body ends here too; h2 reports that as StreamEnded next.
        elif isinstance(ev, h2.events.DataReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.body.update(ev.data)
                s.body_len += len(ev.data)
                if s.path == "/echo":
                    s.echo += ev.data
            self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            s = self.streams.get(ev.stream_id)
            if s is not None:
                s.trailers = [(k.decode(), v.decode()) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            s = self.streams.get(ev.stream_id)
            if s is not None and s.out is None:
                self.respond(ev.stream_id)
        elif isinstance(ev, h2.events.StreamReset):
            self.streams.pop(ev.stream_id, None)

    def respond(self, sid):
        s = self.streams[sid]
        status = "200"
        headers = []
        trailers = None
        path = s.path.split("?")[0]
        if path == "/echo":
            body = bytes(s.echo)
            trailers = [("x-echoed-" + k, v) for k, v in s.trailers] + [("x-body-len", str(s.body_len))]
            chunks = iter([body])
            headers.append(("content-type", "application/octet-stream"))
        elif path == "/sha256":
            body = s.body.hexdigest().encode()
            chunks = iter([body])
            headers.append(("content-length", str(len(body))))
        elif path.startswith("/bytes/") and path[7:].isdigit():
            n = int(path[7:])
            headers.append(("content-length", str(n)))
            chunks = (pattern(off, min(65536, n - off)) for off in range(0, n, 65536))
        elif path == "/trailers":
            chunks = iter([b"trailers\n"])
            trailers = [("x-trailer-one", "1"), ("x-trailer-two", "2")]
        elif path == "/stats":
            with LOCK:
                body = json.dumps(STATS).encode()
            chunks = iter([body])
        else:
            body = json.dumps(
                {"method": s.method, "path": s.path, "authority": s.authority, "headers": s.headers}
            ).encode()
            headers.append(("content-type", "application/json"))
            chunks = iter([body])
        self.h2.send_headers(sid, [(":status", status), ("x-upstream", "h2")] + headers)
        s.out = chunks
        s.out_trailers = trailers

    def pump(self):
        """Sends as much pending body as the flow-control windows allow."""
        for sid, s in list(self.streams.items()):
            if s.out is None:
                continue
            while True:
                if not s.out_left:
                    nxt = next(s.out, None)
                    if nxt is None:
                        if s.out_trailers:
                            self.h2.send_headers(sid, s.out_trailers, end_stream=True)
                        else:
                            self.h2.end_stream(sid)
                        del self.streams[sid]
                        break
                    s.out_left = nxt
                    if not nxt:
                        continue
                try:
                    window = self.h2.local_flow_control_window(sid)
                except h2.exceptions.StreamClosedError:
                    del self.streams[sid]
                    break
                n = min(window, len(s.out_left), self.h2.max_outbound_frame_size)
                if n <= 0:
                    break
                self.h2.send_data(sid, s.out_left[:n])
                s.out_left = s.out_left[n:]
                out = self.h2.data_to_send()
                if out:
                    self.sock.sendall(out)


def serve(sock):
    try:
        Conn(sock).run()
    except OSError:
        pass
    finally:
        sock.close()


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: h2_server.py PORT\n")
        return 1
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        ls.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError as e:
        sys.stderr.write("h2_server: bind: %s\n" % e)
        return 1
    ls.listen(256)
    h2util.emit({"port": ls.getsockname()[1], "pid": os.getpid()})
    while True:
        c, _ = ls.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with LOCK:
            STATS["connections"] += 1
        threading.Thread(target=serve, args=(c,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
