"""`aekit serve` under a bounded load with bad requests mixed in: no 5xx, bounded memory.

The CI-sized run of benchmarks/serve_load.py (which see, for the request mix): a real
``python -m aekit serve`` subprocess on loopback, 300 decodes and 40 uploads from 8 concurrent
clients, with a malformed or oversized request after every 7 good ones.
"""

from __future__ import annotations

import sys

import pytest
from _benchmarks import load_benchmark

RSS_GROWTH_BOUND_MB = 48  # measured growth is a few MB; a leak of even 100 kB a request would pass it

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")]


def _serve_load():
    return load_benchmark("serve_load")


def test_mixed_load_gets_no_server_errors_and_memory_stays_flat(make_run):
    serve_load = _serve_load()
    run = make_run("dense-ae")
    result = serve_load.run_load(run, decodes=300, uploads=40, clients=8, bad_every=7)
    print(result)
    assert result["server_alive"]
    assert result["server_errors"] == 0, result["statuses"]
    assert result["connection_errors"] == 0, result["statuses"]
    assert result["n_unexpected"] == 0, result["unexpected"]
    assert result["latency"]["decode"]["n"] == 300 and result["latency"]["upload"]["n"] == 40
    # every kind of bad request was sent, and each got a 4xx
    assert len(result["bad_requests"]) >= 15, result["bad_requests"]
    assert all(400 <= s < 500 for statuses in result["bad_requests"].values() for s in statuses)
    assert result["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, result
