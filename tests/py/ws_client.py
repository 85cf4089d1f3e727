#!/usr/bin/env python3
"""WebSocket client for tests/websocket.rs: talks to a ws:// URL (through Ringway) and prints one
JSON line with what happened.

  ws_client.py URL echo N     sends N messages (text, binary, and one of 1 MiB), checks each
                              echo byte for byte, then closes from the client side.
  ws_client.py URL server-close
                              sends one message, reads its echo, then waits for the server to
                              close and reports the close code it saw.
"""
import asyncio
import json
import os
import sys

import websockets


async def echo(url, n):
    sizes = [1, 125, 126, 65535, 65536, 1 << 20]
    sent = 0
    async with websockets.connect(url, max_size=None) as ws:
        for i in range(n):
            size = sizes[i % len(sizes)]
            if i % 2 == 0:
                msg = ("x%d-" % i) * (size // 4 + 1)
            else:
                msg = os.urandom(size)
            await ws.send(msg)
            got = await ws.recv()
            if got != msg:
                return {"ok": False, "error": "echo mismatch", "message": i}
            sent += len(msg)
        await ws.close()
        return {"ok": True, "echoed": n, "bytes": sent, "close_code": ws.close_code}


async def server_close(url):
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send("hello")
        got = await ws.recv()
        try:
            extra = await asyncio.wait_for(ws.recv(), timeout=10)
            return {"ok": False, "error": "unexpected message", "got": str(extra)}
        except websockets.ConnectionClosed as e:
            code = e.rcvd.code if getattr(e, "rcvd", None) else ws.close_code
            return {"ok": got == "hello", "close_code": code}


def main():
    url, mode = sys.argv[1], sys.argv[2]
    try:
        if mode == "echo":
            out = asyncio.run(echo(url, int(sys.argv[3])))
        else:
            out = asyncio.run(server_close(url))
    except Exception as e:  # reported, not raised: the Rust test prints it
        out = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
