"""Exponential backoff with full jitter: the one computation behind agent retries
(:class:`~trio_agents.RetryPolicy`) and supervisor restarts (:class:`~trio_agents.Backoff`)."""

from __future__ import annotations

import random


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    factor: float,
    max_delay: float,
    jitter: bool,
    rng: random.Random,
) -> float:
    """Seconds to wait before ``attempt`` (1-based).

    The cap is ``min(max_delay, initial * factor ** (attempt - 1))`` (``max_delay`` when the
    power overflows); with ``jitter`` the delay is drawn uniformly from ``[0, cap]`` ("full
    jitter"), else it is the cap. ``rng`` is used only when jittering a non-zero cap, so a
    seeded ``rng`` gives the same delays every time.
    """
    if initial == 0 or max_delay == 0:
        cap = 0.0
    else:
        try:
            cap = float(min(max_delay, initial * float(factor) ** (attempt - 1)))
        except OverflowError:
            cap = float(max_delay)
    if jitter and cap > 0:
        return rng.uniform(0.0, cap)
    return cap
