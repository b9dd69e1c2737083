"""Retry delays: exponential backoff with full jitter."""

from __future__ import annotations

import random as _random


def backoff_cap(retry: int, base: float, cap: float) -> float:
    """Upper bound of the delay before retry number ``retry`` (1 for the first retry).

    ``min(base * 2**(retry - 1), cap)``.
    """
    exponent = max(retry - 1, 0)
    # 2**exponent overflows float for huge retry counts long after it passed any sane cap
    if exponent > 62:
        return cap
    return float(min(base * (2**exponent), cap))


def backoff_delay(retry: int, base: float, cap: float, rng: _random.Random) -> float:
    """Delay before retry number ``retry``: uniform in ``[0, backoff_cap(retry, base, cap)]``.

    Full jitter spreads retries of many jobs that failed together, so they do not come back in
    one burst.
    """
    return rng.uniform(0.0, backoff_cap(retry, base, cap))
