#!/usr/bin/env python3
"""WebSocket origin for tests/websocket.rs (python3-websockets, a real RFC 6455 implementation).

Listens on 127.0.0.1 on an ephemeral port and prints "PORT <n>" once ready. Paths:
  /ws/echo   echoes every message back (text as text, binary as binary)
  /ws/close  echoes the first message, then closes the connection from the server side (1000)
Every other path is refused with HTTP 404 during the handshake.
"""
import asyncio
import sys

import websockets


async def handler(ws, path=None):
    # websockets >= 10.1 passes only the connection; older releases pass the path too.
    path = path if path is not None else ws.path
    if path.startswith("/ws/close"):
        msg = await ws.recv()
        await ws.send(msg)
        await ws.close(code=1000, reason="server done")
        return
    async for msg in ws:
        await ws.send(msg)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
