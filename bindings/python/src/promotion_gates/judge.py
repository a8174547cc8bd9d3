"""What the judge says: :class:`Health` (with its :class:`Recommendation` and fired
:class:`Rule` bits) and the :class:`RollbackEvent` entries of a gate's history."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from . import _ffi
from .decision import Environment

__all__ = ["Health", "Recommendation", "RollbackEvent", "RollbackTrigger", "RolledBack", "Rule"]


class Recommendation(enum.IntEnum):
    """What the judge advises (``enum pgate_recommendation``)."""

    #: Enough data, no rule fired, score >= 0.9, and the canary shown not worse than the
    #: stable version beyond the tolerated limits: promotable.
    HEALTHY = 0
    #: Too little data, or a score below 0.9 and no rule fired (a score below 0.8 that the
    #: data are not yet sure of included).
    MONITOR = 1
    #: A rule fired (``health_score`` fires once the score's upper confidence bound is below
    #: 0.8): the gate rolls back, or would with auto rollback on.
    ROLLBACK = 2
    #: The canary reported no outcome for ``no_data_ms`` while some were due: never
    #: promotable.
    NO_DATA = 3


class Rule(enum.IntFlag):
    """The judge's rules, as bits of :attr:`Health.rules_fired` (``enum pgate_rule``)."""

    NONE = 0
    #: Compliance below ``slo_threshold``.
    SLO_COMPLIANCE = 1
    #: Error rate above ``max_error_rate``.
    ERROR_RATE_MAX = 2
    #: Error rate above ``error_rate_ratio_limit`` x the stable version's.
    ERROR_RATE_VS_STABLE = 4
    #: Errors improbable at any acceptable rate, before ``min_samples``.
    OVERWHELMING_ERRORS = 8
    #: p99 above the stable version's x ``p99_ratio_limit``.
    P99_VS_STABLE = 16
    #: p99 above ``p99_budget_ms``.
    P99_BUDGET = 32
    #: Health score surely below 0.8: its upper confidence bound is.
    HEALTH_SCORE = 64
    #: Errors in the burst span improbable given the stable version's in the same span.
    ERROR_BURST = 128
    #: Over the stage, errors surely above the stable version's beyond the margin.
    ERRORS_OVER_STAGE = 256
    #: Over the stage after warm-up, latencies surely slower than tolerated (Mann-Whitney).
    LATENCY_SHIFT = 512
    #: No canary outcome for ``no_data_ms`` (holds the promotion; never fired).
    NO_DATA = 1024


@dataclass(frozen=True, slots=True)
class Health:
    """The canary's health in the current window, as ``Gate.read_health()`` reads it and
    ``Gate.monitor_health()`` judges it."""

    #: The stage judged.
    stage: int
    #: Requests to the new version in the window.
    canary_requests: int
    #: Requests to the stable version in the window.
    production_requests: int
    #: The new version's p99 latency, in nanoseconds.
    canary_p99_ns: int
    #: The stable version's p99 latency, in nanoseconds.
    production_p99_ns: int
    #: The canary share (100 in Staging, 0 in Production).
    traffic_percent: float
    #: The new version's error rate.
    canary_error_rate: float
    #: The stable version's error rate.
    production_error_rate: float
    #: The new version's share of requests that succeeded within the latency target.
    canary_compliance: float
    #: 1.0 minus the penalties, in 0..=1.
    health_score: float
    #: The environment judged.
    environment: Environment
    #: HEALTHY, MONITOR, ROLLBACK or NO_DATA (no canary outcome for ``no_data_ms``).
    recommendation: Recommendation
    #: The rules that fired.
    rules_fired: Rule
    #: Whether the new version has at least ``min_samples`` samples in the window (of its
    #: latencies, those after the stage's warm-up), or the stage shows it not worse.
    sufficient_data: bool
    #: The judge's evidence line: samples, rates, p99s, the rules and their thresholds.
    evidence: str

    @classmethod
    def _from_c(cls, raw: _ffi.pgate_health, evidence: str) -> Health:
        return cls(
            stage=raw.stage,
            canary_requests=raw.canary_requests,
            production_requests=raw.production_requests,
            canary_p99_ns=raw.canary_p99_ns,
            production_p99_ns=raw.production_p99_ns,
            traffic_percent=raw.traffic_percent,
            canary_error_rate=raw.canary_error_rate,
            production_error_rate=raw.production_error_rate,
            canary_compliance=raw.canary_compliance,
            health_score=raw.health_score,
            environment=Environment(raw.environment),
            recommendation=Recommendation(raw.recommendation),
            rules_fired=Rule(raw.rules_fired),
            sufficient_data=raw.sufficient_data,
            evidence=evidence,
        )


class RolledBack(str, enum.Enum):
    """What a rollback event rolled back."""

    #: The release: the gate went back to Production.
    RELEASE = "release"
    #: One feature flag, turned off (the environment did not change).
    FLAG = "flag"


class RollbackTrigger(str, enum.Enum):
    """What started a rollback event."""

    #: ``Gate.rollback`` was called.
    MANUAL = "manual"
    #: The judge found the canary in breach of its SLO.
    AUTOMATIC = "automatic"
    #: A feature flag was disabled (the environment did not change).
    FLAG_DISABLED = "flag_disabled"


@dataclass(frozen=True, slots=True)
class RollbackEvent:
    """One entry of a gate's rollback history."""

    #: What was rolled back: the release or a flag.
    rolled_back: RolledBack
    #: The specification's text for it: the environment (``Canary{50}``) or the flag's name.
    feature: str
    #: Why, with the judge's evidence for automatic rollbacks.
    reason: str
    #: When, in milliseconds since the Unix epoch.
    timestamp_ms: int
    #: The environment the gate was in before.
    environment: Environment
    #: That environment's canary share (100 in Staging, 0 in Production).
    traffic_percent: float
    #: What started it.
    trigger: RollbackTrigger
    #: For an automatic rollback, the rules that fired (:attr:`Rule.NONE` otherwise).
    rules: Rule = Rule.NONE

    @property
    def timestamp(self) -> datetime:
        """:attr:`timestamp_ms` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=timezone.utc)

    @classmethod
    def _from_json(cls, event: dict[str, Any]) -> RollbackEvent:
        environment, percent = environment_from_json(event["environment"])
        return cls(
            rolled_back=RolledBack(event["rolled_back"]),
            feature=str(event["feature"]),
            reason=str(event["reason"]),
            timestamp_ms=int(event["timestamp_ms"]),
            environment=environment,
            traffic_percent=percent,
            trigger=RollbackTrigger(event["trigger"]),
            rules=_rules(event.get("rules", ())),
        )


def _rules(names: Any) -> Rule:
    """The :class:`Rule` bits of rule names (``error_rate_max``...); names this binding does
    not know are left out."""
    rules = Rule.NONE
    for name in names:
        rules |= Rule.__members__.get(str(name).upper(), Rule.NONE)
    return rules


def environment_from_json(value: Any) -> tuple[Environment, float]:
    """Reads the JSON form of a Rust ``Environment``: ``"production"``, ``"staging"`` or
    ``{"canary": {"traffic_percent": p}}``, as (environment, canary share)."""
    if value == "production":
        return Environment.PRODUCTION, 0.0
    if value == "staging":
        return Environment.STAGING, 100.0
    if isinstance(value, dict) and isinstance(value.get("canary"), dict):
        return Environment.CANARY, float(value["canary"]["traffic_percent"])
    raise ValueError(f"not an environment: {value!r}")
