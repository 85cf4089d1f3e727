#!/usr/bin/env python3
"""A gRPC test server (grpcio, h2c) with generic handlers on raw bytes: no .proto, no protoc.

Usage: grpc_server.py PORT   (0 picks a free port)

Methods (request and response messages are raw bytes):
  /test.Echo/Unary   echoes the request; initial metadata x-echo-initial: yes, trailing metadata
                     x-echo-trailer: <request length>, x-echo-bin-bin: b"\\x00\\xffok" (binary);
                     also echoes every invocation metadata key starting with x-echo-meta- into
                     the trailing metadata
  /test.Echo/Stream  the request is an ASCII count N: streams N messages b"msg-<i>"
  /test.Echo/Collect client streaming: answers b"<messages> <total bytes>"
  /test.Echo/Bidi    bidirectional: echoes each message as it arrives
  /test.Echo/Fail    aborts with NOT_FOUND, details "no such thing: <request>", trailing metadata
                     x-fail-reason: deliberate
  /test.Echo/Sleep   the request is an ASCII number of milliseconds: sleeps, then echoes it
Any other method: grpcio's own UNIMPLEMENTED.

Prints one JSON line {"port": P, "pid": PID} once serving, then serves until killed (SIGTERM or
SIGINT stop it gracefully). Exits 1 when it cannot bind.
"""

import os
import signal
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import h2util  # noqa: E402


def ident(b):
    return b


def unary(request, context):
    context.send_initial_metadata((("x-echo-initial", "yes"),))
    trailers = [("x-echo-trailer", str(len(request))), ("x-echo-bin-bin", b"\x00\xffok")]
    for k, v in context.invocation_metadata():
        if k.startswith("x-echo-meta-"):
            trailers.append((k, v))
    context.set_trailing_metadata(tuple(trailers))
    return request


def stream(request, context):
    try:
        n = int(request.decode("ascii"))
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request must be an ASCII count")
    for i in range(n):
        yield b"msg-%d" % i


def collect(request_iterator, context):
    count = 0
    total = 0
    for m in request_iterator:
        count += 1
        total += len(m)
    return b"%d %d" % (count, total)


def bidi(request_iterator, context):
    for m in request_iterator:
        yield m


def fail(request, context):
    context.set_trailing_metadata((("x-fail-reason", "deliberate"),))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing: %s" % request.decode("utf-8", "replace"))


def sleep(request, context):
    try:
        ms = int(request.decode("ascii"))
    except ValueError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "request must be ASCII milliseconds")
    time.sleep(ms / 1000.0)
    return request


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: grpc_server.py PORT\n")
        return 1
    port = int(sys.argv[1])
    uu = lambda f: grpc.unary_unary_rpc_method_handler(f, request_deserializer=ident, response_serializer=ident)  # noqa: E731
    handlers = {
        "Unary": uu(unary),
        "Fail": uu(fail),
        "Sleep": uu(sleep),
        "Stream": grpc.unary_stream_rpc_method_handler(stream, request_deserializer=ident, response_serializer=ident),
        "Collect": grpc.stream_unary_rpc_method_handler(collect, request_deserializer=ident, response_serializer=ident),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi, request_deserializer=ident, response_serializer=ident),
    }
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    try:
        bound = server.add_insecure_port("127.0.0.1:%d" % port)
    except RuntimeError as e:
        sys.stderr.write("grpc_server: cannot bind 127.0.0.1:%d: %s\n" % (port, e))
        return 1
    if bound == 0:
        sys.stderr.write("grpc_server: cannot bind 127.0.0.1:%d\n" % port)
        return 1
    server.start()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    h2util.emit({"port": bound, "pid": os.getpid()})
    done.wait()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
