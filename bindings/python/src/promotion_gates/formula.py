"""The routing formula in pure Python (``hashlib`` and integers), independent of the library.

This is the formula written in ``src/bucket.rs`` and in the header of
``tests/vectors/routing.json``::

    salt_block = SHA-256(salt) || 32 zero bytes                 (exactly one 64-byte block)
    digest     = SHA-256(salt_block || request_id)
    x          = first 8 bytes of digest, read as a big-endian u64
    bucket     = floor(x * 10_000_000 / 2^64)                    (0 ..= 9_999_999)
    threshold  = round_half_away_from_zero(traffic_percent * 100_000)   (0 ..= 10_000_000)
    canary     = bucket < threshold

Use it to predict a routing decision without the library (a dashboard, an offline
analysis), or as the reference the tests hold the library to. The library is much faster:
it compresses the salt block once per config (see ``bench_route.py``).
"""

from __future__ import annotations

import hashlib
import math
from decimal import ROUND_HALF_UP, Decimal

__all__ = [
    "BUCKETS",
    "BUCKETS_PER_PERCENT",
    "bucket",
    "digest_prefix",
    "is_canary",
    "round_half_away_from_zero",
    "salt_block",
    "threshold_for_percent",
]

#: Number of buckets: the routing resolution is one in ten million (0.00001 %).
BUCKETS = 10_000_000
#: Buckets per percent of traffic.
BUCKETS_PER_PERCENT = 100_000.0


def _as_bytes(value: bytes | str) -> bytes:
    """A salt or id as its bytes: a str as UTF-8, a bytes-like object as it is. Anything else
    is refused (``bytes(5)`` would be five zero bytes: an int is no id)."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes or a str, not {type(value).__name__}: {value!r:.160}")


def salt_block(salt: bytes | str) -> bytes:
    """``SHA-256(salt) || 32 zero bytes``: the one 64-byte block that stands for the salt."""
    return hashlib.sha256(_as_bytes(salt)).digest() + bytes(32)


def digest_prefix(salt: bytes | str, request_id: bytes | str) -> int:
    """x: the first 8 bytes of ``SHA-256(salt_block || request_id)``, big-endian."""
    digest = hashlib.sha256(salt_block(salt) + _as_bytes(request_id)).digest()
    return int.from_bytes(digest[:8], "big")


def bucket(salt: bytes | str, request_id: bytes | str) -> int:
    """The request's bucket, ``x * 10_000_000 >> 64`` (``0 ..= 9_999_999``)."""
    return digest_prefix(salt, request_id) * BUCKETS >> 64


def round_half_away_from_zero(x: float) -> int:
    """Rounds a double to the nearest integer, ties away from zero (Rust's ``f64::round``).

    Exact on the double's value: ``Decimal(x)`` is the binary value written out in full, so
    ``0.49999999999999994`` gives 0 (``math.floor(x + 0.5)`` gives 1: the sum rounds up to
    1.0 in double arithmetic).
    """
    if not math.isfinite(x):
        raise ValueError(f"cannot round {x!r} to an integer")
    return int(Decimal(x).to_integral_value(rounding=ROUND_HALF_UP))


def threshold_for_percent(traffic_percent: float) -> int:
    """The canary threshold in buckets: ``round_half_away_from_zero(p * 100_000.0)``, the
    product one IEEE-754 double multiplication, clamped to ``0 ..= 10_000_000`` (NaN gives 0).
    """
    scaled = float(traffic_percent) * BUCKETS_PER_PERCENT
    if math.isnan(scaled) or scaled <= 0.0:
        return 0
    if scaled >= BUCKETS:
        return BUCKETS
    return min(round_half_away_from_zero(scaled), BUCKETS)


def is_canary(salt: bytes | str, request_id: bytes | str, traffic_percent: float) -> bool:
    """Whether a canary at ``traffic_percent`` sends ``request_id`` to the new version."""
    return bucket(salt, request_id) < threshold_for_percent(traffic_percent)
