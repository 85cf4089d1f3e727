#!/usr/bin/env python3
"""A tiny HTTP/1.1 upstream for the demo: answers every request with its service name.

Envoy's front-proxy sandbox runs two Flask services that say "Hello from behind Envoy (service N)!";
this stands in for them without containers. Usage: hello_upstream.py PORT NAME
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"Hello from behind Ringway ({NAME})! path={self.path}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    PORT, NAME = int(sys.argv[1]), sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", PORT), Hello).serve_forever()
