"""The local explorer: a FastAPI server and its static page (``aekit serve RUN_DIR``).

:func:`create_app` builds the server for a list of run folders; :mod:`.explorer` holds what it
computes, without HTTP.  Nothing else in aekit imports this package.
"""

from .app import create_app, loopback_hosts
from .explorer import RunExplorer, find_runs

__all__ = ["RunExplorer", "create_app", "find_runs", "loopback_hosts"]
