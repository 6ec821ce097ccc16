"""hypercorn on 127.0.0.1 for bench_http's HTTP/2 section: h2c with prior knowledge and HTTP/1.1 on one
port (hypercorn tells them apart by the connection preface). Prints ``PORT n``; exits when stdin closes.

``/ok`` answers 200 with a 2-byte body, like the fault server's ``/ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def main() -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 1024
    config.h2_max_concurrent_streams = 1000
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_stdin() -> None:
        if not sys.stdin.read(1):  # closed: the bench is done (or died)
            stop.set()
            # Graceful shutdown waits on the connections; one whose client died mid-stream (a native
            # client's panic aborts the bench) can keep it spinning: out within 5 s whatever happens.
            loop.call_later(5, os._exit, 0)

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    asyncio.run(main())
