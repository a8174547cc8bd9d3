"""Routing values: where a gate stands (:class:`Environment`, :class:`State`), one request's
:class:`Decision`, and what happened to a recorded outcome (:class:`Recorded`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from . import _ffi
from ._arguments import finite_float, flag, member, refused, unsigned
from .errors import InvalidArgumentError

__all__ = ["Decision", "Environment", "Forced", "Recorded", "State"]


class Environment(enum.IntEnum):
    """Where a gate stands (``enum pgate_environment``)."""

    #: ``traffic_percent`` % of requests go to the new version.
    CANARY = 0
    #: All requests go to the new version, every flag on.
    STAGING = 1
    #: All requests go to the stable version.
    PRODUCTION = 2


class Recorded(enum.IntEnum):
    """What happened to a recorded outcome (``enum pgate_recorded``)."""

    #: Counted for its stage and cohort.
    COUNTED = 0
    #: Its stage had ended (a promotion or rollback came between): dropped.
    LATE = 1
    #: Its stage is newer than the gate's (not a decision of this gate): dropped.
    FOREIGN = 2
    #: Its request was forced by an override: counted apart, in neither cohort.
    FORCED = 3


class Forced(enum.IntEnum):
    """Whether an override forced a decision, and by what (``enum pgate_forced``)."""

    #: Routed by its bucket.
    NONE = 0
    #: By the forcing value passed to :meth:`Gate.route_forced <promotion_gates.Gate.route_forced>`
    #: (read from the header or cookie the config's ``overrides`` names).
    VALUE = 1
    #: By the config's ``overrides.canary_ids`` or ``overrides.stable_ids``.
    ID_LIST = 2


_ENVIRONMENTS = tuple(Environment)
_RECORDED = tuple(Recorded)
_FORCED = tuple(Forced)


@dataclass(frozen=True, slots=True)
class Decision:
    """One routing decision. Pass it back unchanged to :meth:`Gate.record
    <promotion_gates.Gate.record>` so the outcome counts for the stage and cohort it was
    routed in.

    ``is_canary`` is ``bucket < threshold``; ``threshold`` is ``traffic_percent`` in buckets
    of 0.00001 % (see :mod:`promotion_gates.formula`).
    """

    #: Whether the request goes to the new (canary) version.
    is_canary: bool
    #: The environment at routing time.
    environment: Environment
    #: The canary share at routing time (100 in Staging, 0 in Production).
    traffic_percent: float
    #: The request's bucket, ``0 ..= 9_999_999``.
    bucket: int
    #: Requests with a bucket below this go to the new version, ``0 ..= 10_000_000``.
    threshold: int
    #: The release stage the request was routed in.
    stage: int
    #: The number of the flag set on for this request (read it with ``Gate.features``).
    flag_set: int
    #: Whether an override forced the request (then ``is_canary`` is the version forced to, and
    #: its outcome counts in neither cohort: :attr:`Recorded.FORCED`).
    forced: Forced = Forced.NONE
    # The C struct the library wrote, passed back as is by `Gate.record` (no re-packing).
    # Not an __init__ argument, so `dataclasses.replace` yields a decision without it, and
    # `Gate.record` packs that one from the fields.
    _raw: _ffi.pgate_decision | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    @classmethod
    def _from_c(cls, raw: _ffi.pgate_decision) -> Decision:
        # The hot path of `Gate.route`: the frozen dataclass __init__ costs twice as much as
        # filling the slots directly through their descriptors (as __init__ itself does,
        # via object.__setattr__), so the slots are filled here; the result is the same.
        decision = _new(cls)
        _set_is_canary(decision, raw.is_canary)
        _set_environment(decision, _ENVIRONMENTS[raw.environment])
        _set_traffic_percent(decision, raw.traffic_percent)
        _set_bucket(decision, raw.bucket)
        _set_threshold(decision, raw.threshold)
        _set_stage(decision, raw.stage)
        _set_flag_set(decision, raw.flag_set)
        _set_forced(decision, _FORCED[raw.forced])
        _set_raw(decision, raw)
        return decision

    def _to_c(self) -> _ffi.pgate_decision:
        if self._raw is not None:
            return self._raw
        # A decision built by hand: ctypes would wrap an integer out of range (a stage of
        # 2**64 + s would count for stage s). The library reads only its stage, is_canary and
        # forced, each as a plain integer (ffi/src/route.rs, decision_fields), but every field
        # is checked here all the same, so that a value the C struct cannot hold is refused
        # with InvalidArgumentError naming it, never passed on wrapped.
        return _ffi.pgate_decision(
            stage=unsigned("stage", self.stage, 64),
            traffic_percent=finite_float("traffic_percent", self.traffic_percent),
            bucket=unsigned("bucket", self.bucket, 32),
            threshold=unsigned("threshold", self.threshold, 32),
            flag_set=self._flag_set(),
            environment=_environment(self.environment),
            is_canary=flag("is_canary", self.is_canary),
            forced=_forced(self.forced),
        )

    def _flag_set(self) -> int:
        """The flag set number, range-checked unless the library wrote it."""
        if self._raw is not None:
            return self.flag_set
        return unsigned("flag_set", self.flag_set, 32)


def _environment(value: int) -> int:
    return member(Environment, "environment", value)


def _forced(value: int) -> int:
    return member(Forced, "forced", value)


def packed(decision: Decision) -> _ffi.pgate_decision:
    """The C struct of a decision passed to ``record``, or InvalidArgumentError for a value
    that is not a :class:`Decision` (checked only when it fails: the hot path pays nothing)."""
    try:
        return decision._to_c()
    except AttributeError:
        raise not_a_decision(decision) from None


def flag_set_of(decision: Decision) -> int:
    """A decision's flag set number, as :func:`packed` checks it."""
    try:
        return decision._flag_set()
    except AttributeError:
        raise not_a_decision(decision) from None


def not_a_decision(value: object) -> InvalidArgumentError:
    """The error for a value passed as a decision that is not a :class:`Decision`."""
    return refused("decision", value, f"a Decision, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class State:
    """Where a gate stands now (``pgate_state``): read without judging, no side effect."""

    #: The gate's environment.
    environment: Environment
    #: The canary share (100 in Staging, 0 in Production).
    traffic_percent: float
    #: The current release stage (a new one at each write that starts one: the Rust
    #: crate's StageId lists them).
    stage: int


_new = object.__new__
(
    _set_is_canary,
    _set_environment,
    _set_traffic_percent,
    _set_bucket,
    _set_threshold,
    _set_stage,
    _set_flag_set,
    _set_forced,
    _set_raw,
) = (vars(Decision)[f.name].__set__ for f in fields(Decision))


def recorded(value: int) -> Recorded:
    """The :class:`Recorded` of a ``pgate_recorded`` value."""
    return _RECORDED[value]
