"""Optional failure injection for demos, like the seeds' random failures.

``SAGAKIT_FAILURE_RATE_INVENTORY=0.1`` makes the inventory service refuse about 10 % of
reservations, ``SAGAKIT_FAILURE_RATE_PAYMENT`` the payment service decline about as many
payments. The draw is a hash of the order id, so a re-sent command gets the same answer.
"""

from __future__ import annotations

import functools
import os
import zlib

from sagakit import ConfigError


@functools.cache
def rate(service: str) -> float:
    """The configured failure rate, read once per process."""
    name = f"SAGAKIT_FAILURE_RATE_{service.upper()}"
    raw = os.environ.get(name, "0") or "0"
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value} must be between 0 and 1")
    return value


def injected(service: str, order_id: str) -> bool:
    p = rate(service)
    if p <= 0:
        return False
    draw = zlib.crc32(f"{service}:{order_id}".encode()) / 0xFFFFFFFF
    return draw < p
