"""Hypothesis profiles: the same cases on every CI run, new ones on every local run.

Importing this module (tests/conftest.py does, first thing) registers two profiles and loads one:

* ``ci``, when the environment has ``CI=true`` (or ``CI=1``): ``derandomize=True`` draws the
  cases from each test's own source, so a commit is green or red for what it changed and not
  for what hypothesis happened to try; ``database=None`` keeps a saved failure from one run out
  of the next; ``print_blob=True`` prints a failure as a ``@reproduce_failure`` line to paste.
* ``local`` otherwise: hypothesis's defaults, random cases and the example database in
  ``.hypothesis/`` (so a failure found here is tried first next time).

Both set ``deadline=None``: the machines are slow and shared, and a test that fails because a
neighbour was busy tells nothing.  For the same reason ``ci`` suppresses the ``too_slow``
health check, the other check that depends on the clock (as hypothesis's own built-in ``ci``
profile does; this one is spelled out so that CI does not depend on the hypothesis version).
``pytest --hypothesis-profile=NAME`` still chooses a profile by hand: hypothesis loads it after
this module has run.  ``fuzz/run_fuzz.py`` does not use hypothesis and is not affected.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Both from hypothesis's defaults, not from whatever profile is loaded now: hypothesis loads its own
# "ci" profile on import whenever CI is set at all (CI=false included), and a profile inherits from
# the loaded one unless given a parent.
_DEFAULTS = settings.get_profile("default")
settings.register_profile("ci", _DEFAULTS, derandomize=True, database=None, print_blob=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("local", _DEFAULTS, deadline=None)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


PROFILE = "ci" if in_ci() else "local"
settings.load_profile(PROFILE)
