"""Python binding of promotion-gates: deterministic canary routing and promotion gates.

A :class:`Gate` routes each request id to the canary or the stable version (the same id always
to the same side, by the formula in :mod:`promotion_gates.formula`), records outcomes, judges
the canary against its SLO, rolls a failing canary back, and moves a release through
Canary -> Staging -> Production behind gates::

    from promotion_gates import Gate, Environment

    with Gate({"environment": {"canary": {"traffic_percent": 10}}, "gate": "checkout"}) as gate:
        decision = gate.route("user-42")
        upstream = "canary" if decision.is_canary else "stable"
        gate.record(decision, success=True, latency_s=0.012)
        print(gate.read_health().recommendation.name)  # judged without side effects

The library is loaded with ``ctypes`` on first use: from ``$PROMOTION_GATES_LIBRARY``, else
the library a wheel bundles beside the package, else the repository's ``target/release``
(run from the source tree), else the system loader. A ``Gate`` may be shared by
threads (see :mod:`promotion_gates.gate`); failures raise :class:`PromotionGatesError`
subclasses (see :mod:`promotion_gates.errors`).
"""

import sys

if sys.version_info < (3, 11):  # pip refuses to install it there; this is for a source tree
    raise ImportError(
        "promotion_gates requires Python 3.11 or newer: on 3.10 a signal handler's exception "
        "can leave a call counted in flight (see promotion_gates.gate)"
    )

if not getattr(sys, "_is_gil_enabled", lambda: True)():
    import warnings

    warnings.warn(
        "promotion_gates is not supported on a free-threaded Python with the GIL disabled: "
        "Gate.close() racing with calls on other threads may free a gate under them (a "
        "crash), since its guard relies on the GIL; run with PYTHON_GIL=1 (or -X gil=1), or "
        "close a gate only once no other thread uses it and use each gate from one thread",
        RuntimeWarning,
        stacklevel=2,
    )

from . import changes, decision, errors, formula, gate, judge
from . import _ffi
from ._ffi import LibraryNotFoundError, Status, library_path
from .changes import *  # noqa: F403
from .decision import *  # noqa: F403
from .errors import *  # noqa: F403
from .gate import *  # noqa: F403
from .judge import *  # noqa: F403
from . import telemetry
from .telemetry import *  # noqa: F403

__version__ = _ffi.VERSION


__all__ = [
    "LibraryNotFoundError",
    "Status",
    "formula",
    "library_path",
    *changes.__all__,
    *decision.__all__,
    *errors.__all__,
    *gate.__all__,
    *judge.__all__,
    *telemetry.__all__,
]
