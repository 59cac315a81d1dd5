"""Failpoints, for tests only: named places where a test can have this process die at
once (SIGKILL, no clean-up), to show that what was committed before is kept and what
was not is done again.

``SHENGTU_FAILPOINTS`` is a comma-separated list of names (``payments.notify.before_commit``,
``payments.notify.after_commit``, ``payments.refund.before_provider``,
``payments.refund.after_provider``); unset, as it always is outside the tests, :func:`hit`
does nothing. Read at each hit, so a restarted process runs with its own environment.
"""

from __future__ import annotations

import os
import signal

ENV = "SHENGTU_FAILPOINTS"


def armed(name: str) -> bool:
    names = os.environ.get(ENV, "")
    return bool(names) and name in (n.strip() for n in names.split(","))


def hit(name: str) -> None:
    """Die here if ``name`` is armed."""
    if armed(name):
        os.kill(os.getpid(), signal.SIGKILL)
