"""The explorer's server on a free loopback port, in a thread of this process.

For callers that drive the page themselves (the browser tests, the README's screenshot
script): they need the real server, but not a second process to start and stop.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

START_TIMEOUT_S = 30


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 (any free port); yields the base URL, stops after."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the explorer's server did not start within {START_TIMEOUT_S} s")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
