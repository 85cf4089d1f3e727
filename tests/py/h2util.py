"""Shared helpers for the HTTP/2 test scripts in tests/py: raw HTTP/2 over a socket.

The abuse scripts must send what a well-behaved library refuses to (HEADERS without END_HEADERS
followed by endless CONTINUATION, a request without :path, whitespace in header values), so they
build frames themselves with hyperframe and hpack instead of going through h2's state machine.
`RawH2` owns one client connection on a non-blocking socket: it queues and flushes frames, and
parses what the server sends while it waits, recording the outcome (GOAWAY, RST_STREAM codes,
response statuses and trailers, bytes, close).
`RssSampler` watches a process's VmRSS while an attack runs.

Every script prints exactly one JSON line; `emit` does that.
"""

import json
import select
import socket
import ssl
import sys
import threading
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 §7.
ERROR_NAMES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code):
    return ERROR_NAMES.get(code, "0x%x" % code)


def emit(result):
    """Prints the one JSON result line (and flushes: the caller may be waiting on a pipe)."""
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()


def connect(host, port, tls=False, timeout=10.0, alpn=("h2",)):
    """A connected socket; with `tls`, wrapped (no certificate check: test certs) with ALPN h2."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(list(alpn))
        sock = ctx.wrap_socket(sock, server_hostname=host)
        if sock.selected_alpn_protocol() != "h2":
            raise RuntimeError("server did not select ALPN h2 (got %r)" % sock.selected_alpn_protocol())
    return sock


def read_vmrss_kib(pid):
    """VmRSS of `pid` in KiB, or None if the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class RssSampler:
    """Samples VmRSS of a pid every 20 ms from a thread; reports before, max and after."""

    def __init__(self, pid):
        self.pid = pid
        self.before = read_vmrss_kib(pid) if pid else None
        self.max = self.before
        self._stop = threading.Event()
        self._t = None
        if pid:
            self._t = threading.Thread(target=self._run, daemon=True)
            self._t.start()

    def _run(self):
        while not self._stop.wait(0.02):
            v = read_vmrss_kib(self.pid)
            if v is not None and (self.max is None or v > self.max):
                self.max = v

    def finish(self):
        """Stops sampling; returns the JSON fields (all None without a pid)."""
        self._stop.set()
        if self._t:
            self._t.join()
        after = read_vmrss_kib(self.pid) if self.pid else None
        if after is not None and (self.max is None or after > self.max):
            self.max = after
        growth = None
        if self.before is not None and self.max is not None:
            growth = self.max - self.before
        return {
            "rss_before_kib": self.before,
            "rss_max_kib": self.max,
            "rss_after_kib": after,
            "rss_growth_kib": growth,
            "pid_alive": (after is not None) if self.pid else None,
        }


class RawH2:
    """One raw HTTP/2 client connection (prior knowledge, or TLS with ALPN h2).

    Single-threaded on a non-blocking socket (an SSL socket must not be read and written from two
    threads). Frames are queued and flushed; while a flush waits for the socket to take bytes it
    also reads, unless `reading` is off (the flood modes: the server's replies must pile up on
    its side). A flush that cannot make progress for `send_timeout` sets `blocked`: the server
    stopped reading, which is back-pressure, not a failure. What the server sends is parsed and
    recorded: GOAWAY, RST_STREAM codes, statuses, trailers, DATA bytes, close.
    """

    def __init__(self, host, port, tls=False, settings=None, send_timeout=5.0, connect_timeout=10.0):
        self.host = host
        self.port = port
        self.tls = tls
        self.sock = connect(host, port, tls=tls, timeout=connect_timeout)
        self.sock.setblocking(False)
        self.send_timeout = send_timeout
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder(max_header_list_size=1 << 24)
        self.out = bytearray()
        self.inbuf = bytearray()
        self.reading = True
        self.frames_sent = 0
        self.bytes_sent = 0
        self.blocked = False
        self.send_error = None
        # What the server did.
        self.goaway = None
        self.goaways = []
        self.rst = {}  # stream id -> error name
        self.status = {}  # stream id -> :status
        self.headers = {}  # stream id -> [(name, value)] of the response head
        self.trailers = {}  # stream id -> [(name, value)]
        self.data_bytes = {}  # stream id -> DATA bytes received
        self.ended = set()  # streams that received END_STREAM
        self.pings_acked = 0
        self.settings_acked = 0
        self.server_settings = {}
        self.frames_received = 0
        self.bytes_received = 0
        self.closed = False
        self.close_reason = None
        self.closed_at = None
        self.auto_window = True  # give back DATA credit as it arrives
        self.keep_bodies = False  # keep DATA payloads in `bodies` (small responses only)
        self.bodies = {}  # stream id -> bytearray
        self._hdr_stream = None  # stream whose header block is being continued
        self._hdr_buf = b""
        self._hdr_flags = set()
        self.t0 = time.monotonic()
        self.queue_bytes(PREFACE)
        self.send_frame(self._settings(settings or {}))

    @staticmethod
    def _settings(values):
        f = SettingsFrame(0)
        for k, v in values.items():
            f.settings[k] = v
        return f

    def _mark_closed(self, reason):
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self.closed_at = round(time.monotonic() - self.t0, 3)

    # ---- writing -------------------------------------------------------------------------
    def queue_bytes(self, data):
        self.out.extend(data)

    def queue_frame(self, frame):
        self.out.extend(frame.serialize())
        self.frames_sent += 1

    def flush(self):
        """Writes the queue; False when the server closed or stopped taking bytes."""
        last_progress = time.monotonic()
        while self.out and not self.closed:
            try:
                n = self.sock.send(self.out[:262144])
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                n = 0
            except (OSError, ssl.SSLError) as e:
                self.send_error = "%s: %s" % (type(e).__name__, e)
                self._mark_closed("send failed: %s" % type(e).__name__)
                # Whatever the server said before closing may still be readable.
                self._drain_after_close()
                return False
            if n:
                del self.out[:n]
                self.bytes_sent += n
                last_progress = time.monotonic()
                continue
            if time.monotonic() - last_progress > self.send_timeout:
                self.blocked = True
                self.send_error = "send made no progress for %.1fs" % self.send_timeout
                return False
            rlist = [self.sock] if self.reading else []
            r, _, _ = select.select(rlist, [self.sock], [], 0.05)
            if r:
                self._read_available()
        return not self.closed

    def send_frame(self, frame):
        self.queue_frame(frame)
        return self.flush()

    def header_block_frames(self, stream_id, block, end_stream=True, max_frame=16384):
        first, rest = block[:max_frame], block[max_frame:]
        f = HeadersFrame(stream_id, first)
        if end_stream:
            f.flags.add("END_STREAM")
        if not rest:
            f.flags.add("END_HEADERS")
        frames = [f]
        while rest:
            chunk, rest = rest[:max_frame], rest[max_frame:]
            c = ContinuationFrame(stream_id, chunk)
            if not rest:
                c.flags.add("END_HEADERS")
            frames.append(c)
        return frames

    def request_headers(self, stream_id, headers, end_stream=True, flush=True):
        """Queues a complete header block (HEADERS, plus CONTINUATION past 16 KiB)."""
        for f in self.header_block_frames(stream_id, self.encoder.encode(headers), end_stream):
            self.queue_frame(f)
        return self.flush() if flush else True

    def request_head(self, path="/", authority=None, method="GET"):
        return [
            (":method", method),
            (":scheme", "https" if self.tls else "http"),
            (":authority", authority or "%s:%d" % (self.host, self.port)),
            (":path", path),
        ]

    def get(self, stream_id, path="/", extra=(), end_stream=True, flush=True):
        return self.request_headers(stream_id, self.request_head(path) + list(extra), end_stream, flush)

    def window_update(self, stream_id, increment, flush=True):
        self.queue_frame(WindowUpdateFrame(stream_id, increment))
        return self.flush() if flush else True

    # ---- reading -------------------------------------------------------------------------
    def _recv_some(self):
        """Non-blocking read of what is available; False when nothing was there."""
        try:
            chunk = self.sock.recv(262144)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (OSError, ssl.SSLError) as e:
            self._mark_closed("recv failed: %s" % type(e).__name__)
            return False
        if not chunk:
            self._mark_closed("eof")
            return False
        self.inbuf.extend(chunk)
        self.bytes_received += len(chunk)
        return True

    def _read_available(self):
        while self._recv_some():
            self._parse()
        self._parse()

    def _drain_after_close(self):
        self.sock.setblocking(True)
        self.sock.settimeout(0.5)
        try:
            while True:
                chunk = self.sock.recv(262144)
                if not chunk:
                    break
                self.inbuf.extend(chunk)
        except (OSError, ssl.SSLError):
            pass
        self._parse()

    def _parse(self):
        while len(self.inbuf) >= 9:
            try:
                frame, length = Frame.parse_frame_header(memoryview(bytes(self.inbuf[:9])))
            except Exception as e:
                self._mark_closed("bad frame header from server: %s" % e)
                self.inbuf.clear()
                return
            if len(self.inbuf) < 9 + length:
                return
            body = bytes(self.inbuf[9 : 9 + length])
            del self.inbuf[: 9 + length]
            try:
                frame.parse_body(memoryview(body))
            except Exception as e:
                self._mark_closed("bad frame body from server: %s" % e)
                return
            self.frames_received += 1
            self._on_frame(frame, length)

    def _on_frame(self, f, length):
        if isinstance(f, SettingsFrame):
            if "ACK" in f.flags:
                self.settings_acked += 1
            else:
                self.server_settings.update({int(k): v for k, v in f.settings.items()})
                self.queue_frame(SettingsFrame(0, flags=["ACK"]))
        elif isinstance(f, PingFrame):
            if "ACK" in f.flags:
                self.pings_acked += 1
            else:
                p = PingFrame(0, flags=["ACK"])
                p.opaque_data = f.opaque_data
                self.queue_frame(p)
        elif isinstance(f, GoAwayFrame):
            self.goaway = {
                "error_code": f.error_code,
                "error": error_name(f.error_code),
                "last_stream_id": f.last_stream_id,
                "debug": f.additional_data.decode("utf-8", "replace"),
                "at_s": round(time.monotonic() - self.t0, 3),
            }
            self.goaways.append(self.goaway)
        elif isinstance(f, RstStreamFrame):
            self.rst[f.stream_id] = error_name(f.error_code)
        elif isinstance(f, (HeadersFrame, ContinuationFrame)):
            if isinstance(f, HeadersFrame):
                self._hdr_stream = f.stream_id
                self._hdr_buf = f.data
                self._hdr_flags = set(f.flags)
            else:
                self._hdr_buf += f.data
            if "END_HEADERS" in f.flags:
                try:
                    hs = self.decoder.decode(self._hdr_buf, raw=False)
                except Exception as e:
                    self._mark_closed("cannot decode server header block: %s" % e)
                    return
                sid = self._hdr_stream
                if sid in self.status:
                    self.trailers[sid] = hs
                else:
                    for n, v in hs:
                        if n == ":status":
                            self.status[sid] = int(v)
                    self.headers[sid] = hs
                if "END_STREAM" in self._hdr_flags:
                    self.ended.add(sid)
        elif isinstance(f, DataFrame):
            self.data_bytes[f.stream_id] = self.data_bytes.get(f.stream_id, 0) + len(f.data)
            if self.keep_bodies:
                self.bodies.setdefault(f.stream_id, bytearray()).extend(f.data)
            if "END_STREAM" in f.flags:
                self.ended.add(f.stream_id)
            if self.auto_window and length > 0:
                self.queue_frame(WindowUpdateFrame(0, length))
                if "END_STREAM" not in f.flags:
                    self.queue_frame(WindowUpdateFrame(f.stream_id, length))

    def pump(self, timeout):
        """Reads (and flushes queued ACKs/window updates) for up to `timeout` seconds."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        pending = self.tls and self.sock.pending()
        if r or pending:
            self._read_available()
        if self.out and not self.closed:
            self.flush()

    def wait(self, cond, timeout):
        """Reads until `cond()` holds, the connection closes, or `timeout` passes."""
        self.reading = True
        deadline = time.monotonic() + timeout
        while not cond() and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.pump(min(left, 0.05))
        return cond()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def outcome(self):
        """What the server did, as JSON fields."""
        rst_counts = {}
        for name in self.rst.values():
            rst_counts[name] = rst_counts.get(name, 0) + 1
        statuses = {}
        for s in self.status.values():
            statuses[str(s)] = statuses.get(str(s), 0) + 1
        return {
            "closed": self.closed,
            "close_reason": self.close_reason,
            "closed_at_s": self.closed_at,
            "goaway": self.goaway,
            "goaways": self.goaways,
            "rst": rst_counts,
            "statuses": statuses,
            "frames_sent": self.frames_sent,
            "bytes_sent": self.bytes_sent,
            "frames_received": self.frames_received,
            "bytes_received": self.bytes_received,
            "send_blocked": self.blocked,
            "send_error": self.send_error,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
        }
