"""``aekit serve``: the local latent-space explorer in a browser."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import click

from . import main


def _bind(host: str, port: int) -> socket.socket:
    """Bind here rather than in uvicorn, so the printed address is the real one (--port 0 picks a
    free port) and a busy port is a one-line error, not a traceback from inside the server."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as err:
        raise click.ClickException(f"--host {host}: cannot resolve it ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        hint = "; choose another --port" if err.errno in (98, 48, 10048) else ""
        raise click.ClickException(f"cannot listen on {host}:{port} ({err.strerror}){hint}") from None
    return sock


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback lets other machines reach the page.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where the models run; one small decode is fastest on the CPU.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Torch's intra-op threads; with one, concurrent requests each get a core, and a "
                   "single small decode is no slower (benchmarks/serve_latency.py measures it).")
def serve(path, port, host, device, threads):
    """Explore a run's latent space in the browser: PATH is a run folder, a folder of runs, a
    pretrained model (pretrained:NAME, see `aekit pretrained`) or hf://ORG/NAME[@REV]."""
    import torch
    import uvicorn

    from ..run.sources import is_source_spec
    from ..web import create_app, find_runs, loopback_hosts

    runs = [path] if is_source_spec(path) else find_runs(path)
    sock = _bind(host, port)  # first: a busy port fails before any run is read
    # Requests run in a thread pool; one torch thread each lets concurrent decodes use the
    # cores instead of fighting over them, and a single 28x28 decode gains nothing from more.
    torch.set_num_threads(threads)
    # On loopback only loopback Host headers are accepted: a web page elsewhere cannot then reach
    # the server through DNS rebinding.  Elsewhere (0.0.0.0, a LAN address) any Host is.
    allowed = loopback_hosts(host, sock.getsockname()[0])
    loopback = allowed is not None
    try:
        # A single run that cannot be served (or a folder with none) is aekit's one-line error.
        app = create_app(runs, device=device, allowed_hosts=allowed)
    except BaseException:
        sock.close()
        raise
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    if not loopback:
        click.echo(f"warning: listening on {host}: anyone who can reach this machine can use the page", err=True)
    broken = [r for r in app.state.runs.values() if r.broken]  # each already logged with its reason
    what = f"{len(runs)} runs" if len(runs) > 1 else str(runs[0])
    if broken:
        what += f" ({len(broken)} broken)"
    click.echo(f"serving {what} at http://{shown_host}:{bound_port}/  (Ctrl-C to stop)")
    verbose = logging.getLogger().level <= logging.DEBUG
    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose,
                            timeout_graceful_shutdown=2)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
