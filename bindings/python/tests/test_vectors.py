"""The shared routing vectors (tests/vectors/routing.json), through the library and through
the formula recomputed in pure Python, plus a seeded random comparison of the two."""

from __future__ import annotations

import hashlib
import math
import random
from collections import defaultdict
from typing import Any

import pytest
from conftest import canary, request_id

from promotion_gates import Environment, Forced, Gate, InvalidConfigError, formula


def test_salt_blocks_match_the_known_answers(vector_file: dict[str, Any]) -> None:
    answers = vector_file["header"]["salt_block_sha256"]
    assert answers
    for answer in answers:
        block = formula.salt_block(answer["salt"])
        assert len(block) == 64 and block[32:] == bytes(32)
        assert block[:32].hex() == answer["salt_sha256"]
        assert hashlib.sha256(block).hexdigest() == answer["salt_block_sha256"]


def test_the_formula_recomputes_every_vector(vector_file: dict[str, Any]) -> None:
    """The formula as written in the README and src/bucket.rs, with hashlib and integers."""
    failures = []
    for v in vector_file["vectors"]:
        rid = request_id(v)
        salt = v["salt"].encode("utf-8")
        # Written out here once more, step by step, rather than through `formula`.
        salt_block = hashlib.sha256(salt).digest() + bytes(32)
        digest = hashlib.sha256(salt_block + rid).digest()
        x = int.from_bytes(digest[:8], "big")
        bucket = x * 10_000_000 >> 64
        threshold = formula.threshold_for_percent(v["traffic_percent"])
        got = {
            "digest_prefix": digest[:8].hex(),
            "bucket": bucket,
            "threshold": threshold,
            "is_canary": bucket < threshold,
            "formula.bucket": formula.bucket(salt, rid),
        }
        expected = {
            "digest_prefix": v["digest_prefix"],
            "bucket": v["bucket"],
            "threshold": v["threshold"],
            "is_canary": v["is_canary"],
            "formula.bucket": v["bucket"],
        }
        if got != expected:
            failures.append(f"{v['name']}: {got} != {expected}")
    assert not failures, "\n".join(failures)


def test_gates_route_every_vector(vector_file: dict[str, Any]) -> None:
    """One gate per (salt, percentage), salted through `salt` and through the gate's name; each
    once more with the header's overrides (the header's `overridden` rule), routed with no
    forcing value and with one that forces nothing."""
    overridden = vector_file["header"]["overridden"]
    ignored = overridden["ignored_value"].encode("utf-8")
    groups: dict[tuple[str, float], list[dict[str, Any]]] = defaultdict(list)
    for v in vector_file["vectors"]:
        groups[(v["salt"], v["traffic_percent"])].append(v)
    failures = []
    routed = 0
    for (salt, percent), group in groups.items():
        for via, config in (
            ("salt", canary(percent, salt=salt)),
            ("gate", canary(percent, gate=salt)),
        ):
            with (
                Gate(config) as gate,
                Gate({**config, "overrides": overridden["overrides"]}) as overriding,
            ):
                for v in group:
                    rid = request_id(v)
                    d = gate.route(rid)
                    routed += 1
                    want = (v["is_canary"], v["bucket"], v["threshold"], Forced.NONE)
                    for how, decision in (
                        ("no overrides", d),
                        ("overrides, no forcing value", overriding.route(rid)),
                        ("overrides, an ignored value", overriding.route_forced(rid, ignored)),
                    ):
                        got = (
                            decision.is_canary,
                            decision.bucket,
                            decision.threshold,
                            decision.forced,
                        )
                        if got != want:
                            failures.append(f"{v['name']} (via {via}, {how}): {got} != {want}")
                        assert decision.environment is Environment.CANARY
                        assert decision.traffic_percent == percent
                    if "id" in v:
                        assert gate.route(v["id"]) == d, "a str id routes as its UTF-8 bytes"
    assert not failures, "\n".join(failures)
    assert routed == 2 * len(vector_file["vectors"])


@pytest.mark.parametrize(
    "x, rounded",
    [
        (0.0, 0),
        (0.49999999999999994, 0),  # math.floor(x + 0.5) gives 1 here
        (0.5, 1),
        (1.5, 2),
        (2.5, 3),  # ties away from zero, not to even
        (3.4999999999999996, 3),  # 0.000035 * 100_000 in double arithmetic
        (9_999_999.5, 10_000_000),
        (-2.5, -3),
    ],
)
def test_round_half_away_from_zero_is_exact(x: float, rounded: int) -> None:
    assert formula.round_half_away_from_zero(x) == rounded


def test_thresholds_follow_the_double_product() -> None:
    assert 0.000035 * 100_000.0 == 3.4999999999999996
    assert formula.threshold_for_percent(0.000035) == 3
    assert formula.threshold_for_percent(12.345678) == 1_234_568
    assert formula.threshold_for_percent(100.0) == 10_000_000
    assert formula.threshold_for_percent(math.nan) == 0


def test_the_library_rounds_where_floor_plus_half_would_not() -> None:
    """A percentage whose product is the largest double below 0.5: Rust's round gives 0."""
    percent = 4.9999999999999996e-06
    assert percent * 100_000.0 == 0.49999999999999994
    assert math.floor(percent * 100_000.0 + 0.5) == 1  # the naive formula is wrong here
    assert formula.threshold_for_percent(percent) == 0
    # A share that routes no bucket is refused, through promote() and a config alike.
    with Gate() as gate:
        with pytest.raises(InvalidConfigError, match="environment.canary.traffic_percent"):
            gate.promote(Environment.CANARY, percent)
    with pytest.raises(InvalidConfigError, match="environment.canary.traffic_percent"):
        Gate(canary(percent))
    for p in (0.000005, 0.000035, 12.345678, 0.00001):
        # promote() hands the library the exact double (a config's JSON may not: see below).
        with Gate() as gate:
            gate.promote(Environment.CANARY, p)
            d = gate.route(b"any")
            assert d.traffic_percent == p
            assert d.threshold == formula.threshold_for_percent(p), p


def test_config_json_percentages_arrive_exactly() -> None:
    rng = random.Random(7)
    percents = [0.000005, 0.00001] + [rng.uniform(0, 100) for _ in range(300)]
    off = []
    for p in percents:
        with Gate(canary(p)) as gate:
            d = gate.route(b"any")
            if d.traffic_percent != p or d.threshold != formula.threshold_for_percent(p):
                off.append(f"{p!r} arrived as {d.traffic_percent!r} (threshold {d.threshold})")
    assert not off, f"{len(off)} of {len(percents)}: " + "; ".join(off[:5])


SALTS = ["default", "checkout", "a", "café-☕-gate", "search/v2:eu-west-1", "x" * 128]


def test_library_and_formula_agree_on_random_ids() -> None:
    """10 000 ids of random bytes (lengths 0..300) and random percentages, several salts."""
    rng = random.Random(20240611)
    per_salt = 10_000 // len(SALTS) + 1
    checked = 0
    for salt in SALTS:
        percent = rng.choice([0.0, 0.00001, 1.0, 33.333333, 50.0, 99.99999, 100.0])
        percent = percent if rng.random() < 0.5 else round(rng.uniform(0, 100), rng.randint(0, 9))
        threshold = formula.threshold_for_percent(percent)
        with Gate(canary(percent, salt=salt)) as gate:
            for _ in range(per_salt):
                rid = rng.randbytes(rng.randint(0, 300))
                d = gate.route(rid)
                bucket = formula.bucket(salt, rid)
                assert (d.bucket, d.threshold, d.is_canary) == (
                    bucket,
                    threshold,
                    bucket < threshold,
                ), f"salt {salt!r}, id {rid.hex()}, percent {percent!r}"
                checked += 1
    assert checked >= 10_000
