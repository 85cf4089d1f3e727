#!/usr/bin/env python3
"""gRPC test client (grpcio, h2c) for grpc_server.py's /test.Echo methods, through any target.

Usage:
  grpc_client.py suite --target HOST:PORT
      Unary (small, empty and 1 MiB messages; initial and trailing metadata, including a binary
      -bin trailer and an echoed x-echo-meta-* key), Stream (100 messages), Collect (client
      streaming), Bidi, Fail (NOT_FOUND, its details and x-fail-reason trailer), in that order.
      Prints {"ok": bool, "checks": {name: {"ok": bool, ...}}}; exits 2 if any check failed.
  grpc_client.py call --target HOST:PORT --method /svc/Method [--payload TEXT] [--timeout S]
                      [--expect-code NAME]
      One unary call; prints {"code": "UNIMPLEMENTED", "code_value": 12, "details": ...,
      "initial_metadata": {...}, "trailing_metadata": {...}, "response": ...}. Exits 2 when
      --expect-code is given and differs, else 0.
  grpc_client.py raw --target HOST:PORT --path /svc/Method [--payload TEXT] [--timeout S]
      The same request over raw HTTP/2 frames (not grpcio), to see the exact response shape:
      {"http_status", "headers", "trailers", "trailers_only" (grpc-status came in the only
      header block), "grpc_status", "grpc_message", "messages": [...], "rst", "goaway"}. This
      is how a test tells a gRPC-shaped local reply (HTTP 200 + grpc-status) from a plain HTTP
      error that grpcio would also map to a gRPC code.
Exits 1 when it cannot run at all (bad arguments, no connection in raw mode).
"""

import argparse
import os
import struct
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import h2util  # noqa: E402


def ident(b):
    return b


def md(pairs):
    out = {}
    for k, v in pairs or ():
        out[k] = v.hex() if isinstance(v, bytes) else v
    return out


def unary(ch, method, payload, timeout, metadata=()):
    call = ch.unary_unary(method, request_serializer=ident, response_deserializer=ident)
    try:
        resp, c = call.with_call(payload, timeout=timeout, metadata=metadata)
        return {
            "code": "OK",
            "code_value": 0,
            "details": c.details(),
            "response": resp,
            "initial_metadata": md(c.initial_metadata()),
            "trailing_metadata": md(c.trailing_metadata()),
        }
    except grpc.RpcError as e:
        return {
            "code": e.code().name,
            "code_value": e.code().value[0],
            "details": e.details(),
            "response": None,
            "initial_metadata": md(e.initial_metadata()),
            "trailing_metadata": md(e.trailing_metadata()),
        }


def suite(target, timeout):
    checks = {}
    with grpc.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    ) as ch:
        for name, payload in (("unary_small", b"hello"), ("unary_empty", b""), ("unary_1mib", bytes(range(256)) * 4096)):
            r = unary(ch, "/test.Echo/Unary", payload, timeout, metadata=(("x-echo-meta-k", "v1"),))
            ok = (
                r["code"] == "OK"
                and r["response"] == payload
                and r["initial_metadata"].get("x-echo-initial") == "yes"
                and r["trailing_metadata"].get("x-echo-trailer") == str(len(payload))
                and r["trailing_metadata"].get("x-echo-bin-bin") == b"\x00\xffok".hex()
                and r["trailing_metadata"].get("x-echo-meta-k") == "v1"
            )
            r["response_len"] = len(r.pop("response") or b"")
            r["ok"] = ok
            checks[name] = r

        st = ch.unary_stream("/test.Echo/Stream", request_serializer=ident, response_deserializer=ident)
        try:
            got = list(st(b"100", timeout=timeout))
            checks["stream"] = {"ok": got == [b"msg-%d" % i for i in range(100)], "messages": len(got)}
        except grpc.RpcError as e:
            checks["stream"] = {"ok": False, "code": e.code().name, "details": e.details()}

        cu = ch.stream_unary("/test.Echo/Collect", request_serializer=ident, response_deserializer=ident)
        msgs = [b"x" * (i * 100) for i in range(50)]
        try:
            got = cu(iter(msgs), timeout=timeout)
            want = b"%d %d" % (len(msgs), sum(len(m) for m in msgs))
            checks["collect"] = {"ok": got == want, "response": got.decode()}
        except grpc.RpcError as e:
            checks["collect"] = {"ok": False, "code": e.code().name, "details": e.details()}

        bd = ch.stream_stream("/test.Echo/Bidi", request_serializer=ident, response_deserializer=ident)
        msgs = [b"bidi-%d" % i for i in range(20)]
        try:
            got = list(bd(iter(msgs), timeout=timeout))
            checks["bidi"] = {"ok": got == msgs, "messages": len(got)}
        except grpc.RpcError as e:
            checks["bidi"] = {"ok": False, "code": e.code().name, "details": e.details()}

        r = unary(ch, "/test.Echo/Fail", b"widget", timeout)
        r.pop("response")
        r["ok"] = (
            r["code"] == "NOT_FOUND"
            and r["details"] == "no such thing: widget"
            and r["trailing_metadata"].get("x-fail-reason") == "deliberate"
        )
        checks["fail"] = r
    ok = all(c["ok"] for c in checks.values())
    return {"ok": ok, "checks": checks}


def grpc_frame(payload):
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def parse_messages(body):
    msgs = []
    while len(body) >= 5:
        n = struct.unpack(">I", body[1:5])[0]
        msgs.append(body[5 : 5 + n].decode("utf-8", "replace"))
        body = body[5 + n :]
    return msgs


def raw(target, path, payload, timeout):
    host, _, port = target.rpartition(":")
    c = h2util.RawH2(host, int(port))
    body = bytearray()
    orig = c._on_frame

    def on_frame(f, length):
        if type(f).__name__ == "DataFrame" and f.stream_id == 1:
            body.extend(f.data)
        orig(f, length)

    c._on_frame = on_frame
    head = c.request_head(path, method="POST") + [
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("grpc-timeout", "%dm" % int(timeout * 1000)),
    ]
    c.request_headers(1, head, end_stream=False)
    from hyperframe.frame import DataFrame

    c.send_frame(DataFrame(1, grpc_frame(payload), flags=["END_STREAM"]))
    c.wait(lambda: 1 in c.ended or 1 in c.rst, timeout + 5)
    headers = dict(c.headers.get(1, []))
    trailers = dict(c.trailers.get(1, []))
    trailers_only = 1 in c.ended and 1 not in c.trailers and "grpc-status" in headers
    src = headers if trailers_only else trailers
    gs = src.get("grpc-status")
    c.close()
    return {
        "http_status": c.status.get(1),
        "headers": headers,
        "trailers": trailers,
        "trailers_only": trailers_only,
        "grpc_status": int(gs) if gs is not None and gs.isdigit() else gs,
        "grpc_message": urllib.parse.unquote(src.get("grpc-message", "")) if "grpc-message" in src else None,
        "messages": parse_messages(bytes(body)),
        "ended": 1 in c.ended,
        "rst": c.rst.get(1),
        "goaway": c.goaway,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["suite", "call", "raw"])
    p.add_argument("--target", required=True, help="HOST:PORT")
    p.add_argument("--method", default="/test.Echo/Unary")
    p.add_argument("--path", default=None, help="raw mode: the :path (default --method)")
    p.add_argument("--payload", default="ping")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--expect-code", default=None)
    a = p.parse_args()
    if a.mode == "suite":
        r = suite(a.target, a.timeout)
        h2util.emit(r)
        return 0 if r["ok"] else 2
    if a.mode == "call":
        with grpc.insecure_channel(a.target) as ch:
            r = unary(ch, a.method, a.payload.encode(), a.timeout)
        resp = r.pop("response")
        r["response"] = resp.decode("utf-8", "replace") if resp is not None else None
        h2util.emit(r)
        if a.expect_code and r["code"] != a.expect_code:
            return 2
        return 0
    try:
        r = raw(a.target, a.path or a.method, a.payload.encode(), a.timeout)
    except OSError as e:
        h2util.emit({"error": "%s: %s" % (type(e).__name__, e)})
        return 1
    h2util.emit(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
