"""Checks of the arguments this binding hands to ``ctypes`` and the library.

``ctypes`` converts a Python int to ``c_uint32``/``c_uint64`` modulo 2**32/2**64 without a
word (``stage=2**64 + s`` would arrive as ``s``), raises its own ``OverflowError`` or
``TypeError`` for a float out of range, and a text must be encoded first (a lone surrogate
cannot be). Every argument crossing into the library goes through one of the functions below
first, which raise :class:`InvalidArgumentError` naming the field and the value, before
anything is called.
"""

from __future__ import annotations

import enum
import json
import math
import numbers
import operator
import re
from collections.abc import Mapping

from ._ffi import Status
from .errors import InvalidArgumentError

__all__ = [
    "document",
    "finite_float",
    "flag",
    "latency_error",
    "latency_ns",
    "member",
    "refused",
    "shown",
    "unsigned",
    "utf8",
]

_U64_LIMIT = 1 << 64

#: The most bytes of a refused value a message shows, as the library's
#: ``MAX_SHOWN_VALUE_BYTES`` (``src/error.rs``): a longer value is cut there and ends with
#: ``...(N bytes)``, so that a huge argument never makes a huge message.
MAX_SHOWN_VALUE_BYTES = 160


#: The characters the library calls invisible, drawn as nothing, as first and last code point:
#: Unicode's Default_Ignorable_Code_Point (Unicode 15.1) and U+2800 BRAILLE PATTERN BLANK, copied
#: from ``DEFAULT_IGNORABLE`` and ``is_invisible`` in ``src/config/unseen.rs``. ``repr`` writes
#: many of them as they are (U+2800, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, the
#: variation selectors, U+034F), which would leave a message's value looking like another.
INVISIBLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

_INVISIBLE_CHARACTER = re.compile(
    "[" + "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in INVISIBLE) + "]"
)


def _escaped(text: str) -> str:
    """``text`` with each :data:`INVISIBLE` character escaped as ``repr`` escapes a character
    (``\\u2800``, ``\\U000e0100``)."""
    return _INVISIBLE_CHARACTER.sub(
        lambda found: found.group().encode("unicode_escape").decode("ascii"), text
    )


def shown(value: object) -> str:
    """``repr(value)``, or for a longer value its first ``MAX_SHOWN_VALUE_BYTES`` and
    ``...(N bytes)``, as the library shows a value: a str or bytes is cut before it is quoted
    (``'xx…x'...(10000000 bytes)``, N its UTF-8 or byte length), any other value's repr is cut
    (``1000…0...(401 bytes)``, N the length of the repr as shown). A character drawn as
    nothing (:data:`INVISIBLE`) is escaped, as the library escapes it: ``'beta\\u2800'``."""
    if isinstance(value, str):
        size = len(value.encode("utf-8", "surrogatepass"))
        if size <= MAX_SHOWN_VALUE_BYTES:
            return _escaped(repr(value))
        head = value[:MAX_SHOWN_VALUE_BYTES]
        while len(head.encode("utf-8", "surrogatepass")) > MAX_SHOWN_VALUE_BYTES:
            head = head[:-1]
        return f"{_escaped(repr(head))}...({size} bytes)"
    if isinstance(value, (bytes, bytearray)):
        if len(value) <= MAX_SHOWN_VALUE_BYTES:
            return repr(value)
        return f"{value[:MAX_SHOWN_VALUE_BYTES]!r}...({len(value)} bytes)"
    try:
        text = repr(value)
    except ValueError:  # an int past sys.get_int_max_str_digits() has no decimal repr
        if isinstance(value, int):
            return f"<an integer of {value.bit_length()} bits>"
        return f"<a {type(value).__name__}>"
    except Exception:  # a host's __repr__ that raises; a structure nested too deeply for repr
        return f"<a {type(value).__name__}>"
    text = _escaped(text)
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_SHOWN_VALUE_BYTES:
        return text
    head_text = raw[:MAX_SHOWN_VALUE_BYTES].decode("utf-8", "ignore")
    return f"{head_text}...({len(raw)} bytes)"


def refused(field: str, value: object, why: str) -> InvalidArgumentError:
    """The error for an argument refused before the library is called:
    ``invalid <field> = <value>: <why>``, the value as :func:`shown` writes it."""
    return InvalidArgumentError(
        Status.INVALID_ARGUMENT, f"invalid {field} = {shown(value)}: {why}"
    )


def _kind(value: object) -> str:
    """The name of ``value``'s type as a message shows it: ``str``, or ``numpy.bool`` for one
    outside the builtins (numpy's ``bool``, ``int64`` are not Python's)."""
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _integral(value: object) -> int | None:
    """``value`` as an int if it is an integer (any ``numbers.Integral``: an int subclass,
    numpy's ``int64`` or ``uint64``), exactly, through ``operator.index``; ``None`` for any other
    value, a bool too (``True`` would be 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return operator.index(value)


def unsigned(field: str, value: object, bits: int) -> int:
    """``value`` as an int in ``0 ..= 2**bits - 1`` (an int or an int-like object, not a bool:
    ``True`` would be 1, as :func:`_number` refuses it), or raises."""
    if isinstance(value, bool):
        raise refused(field, value, "an integer, not bool")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise refused(field, value, "not an integer") from None
    if not 0 <= number < 1 << bits:
        raise refused(field, number, f"an integer from 0 to 2**{bits} - 1")
    return number


def member(kind: type[enum.IntEnum], field: str, value: object) -> int:
    """``value`` as a member of the C enum ``kind``, else raises (the library reads these
    numbers as Rust enums or checks them; ctypes would wrap one out of range). A bool or a
    float is refused, though ``kind(True)`` and ``kind(1.0)`` are the member 1."""
    # A bool or a float equal to a member (True, 1.0, Decimal(1)) is no member's number.
    # A member of another enum (Recorded.LATE is 1, Environment.STAGING's number) is no
    # member of this one either. Any other integer is (numpy's int64(0) is the member 0).
    members = [int(m) for m in kind]
    foreign = isinstance(value, enum.Enum) and not isinstance(value, kind)
    number = None if foreign else _integral(value)
    if number is None:
        raise refused(
            field,
            value,
            f"one of {members}, an integer or a member of {kind.__name__}, not {_kind(value)}",
        )
    try:
        return int(kind(number))
    except ValueError:
        raise refused(field, value, f"one of {members}") from None


def utf8(field: str, value: object) -> bytes:
    """A text as its UTF-8 bytes, else raises (not a str, or a str with a lone surrogate)."""
    if not isinstance(value, str):
        raise refused(field, value, f"a str, not {type(value).__name__}")
    try:
        # str's own encode: a subclass's could return bytes whose len() lies.
        return str.encode(value, "utf-8")
    except UnicodeEncodeError as error:
        raise refused(
            field, value, f"not UTF-8: a lone surrogate at index {error.start}"
        ) from None


def _number(field: str, value: object) -> numbers.Real:
    """``value`` if it is a real number, else raises: a bool (``True`` would be 1) or a str
    (``"25"``) is refused, though ``float()`` takes both."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refused(field, value, f"a number, not {_kind(value)}")
    return value


def document(value: object, what: str) -> bytes:
    """A config given as a mapping (dumped to JSON), a JSON string or JSON bytes, else raises.

    A mapping holding a NaN or an infinity is refused naming the field as the library names
    it, its key path, and the value (``invalid environment.canary.traffic_percent = nan: …``):
    ``json.dumps`` would write ``NaN``, which is not JSON, and the library's parse error could
    not show the value.
    """
    if type(value) is bytes:
        return value
    if isinstance(value, bytes):
        # A subclass's own len() could lie about the buffer the library reads: a plain copy.
        return bytes(memoryview(value))
    if isinstance(value, str):
        return utf8(what, value)
    if isinstance(value, Mapping):
        try:
            plain = dict(value)
        except Exception as error:  # a mapping whose keys() or [] raises
            raise refused(
                what, value, f"a mapping that cannot be read: {type(error).__name__}: {error}"
            ) from error
        try:
            return json.dumps(plain, allow_nan=False).encode("utf-8")
        except RecursionError:
            raise refused(
                what, value, "not JSON: nested deeper than Python's recursion limit"
            ) from None
        except (TypeError, ValueError) as error:  # a value JSON has no form for
            try:
                found = _not_finite(value, "", frozenset())
            except Exception:  # an inner mapping that cannot be read: json.dumps said why
                found = None
            if found is not None:
                path, number = found
                raise refused(path, number, f"not finite: {_NO_NAN}") from None
            raise refused(what, value, f"not JSON: {error}") from None
        except Exception as error:  # an inner mapping's own code raised
            raise refused(
                what, value, f"not JSON: {type(error).__name__}: {error}"
            ) from error
    raise refused(what, value, f"a dict or a JSON string, not {type(value).__name__}")


#: Why a NaN or an infinity in a document is refused.
_NO_NAN = "JSON has no NaN or infinity"

def _not_finite(value: object, path: str, within: frozenset[int]) -> tuple[str, float] | None:
    """The key path (``a.b[2].c``) and value of the first NaN or infinity in a document to be
    dumped, if any; ``within`` holds the containers around ``value``, so a cycle (which
    ``json.dumps`` also refuses) ends the search."""
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    if id(value) in within:
        return None
    if isinstance(value, Mapping):
        items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for inner_path, item in items:
        found = _not_finite(item, inner_path, within | {id(value)})
        if found is not None:
            return found
    return None


def finite_float(field: str, value: object) -> float:
    """``value`` as a float for a ``c_double`` (any real number a float can hold, not a bool or
    a str), or raises.

    NaN and infinities pass: the library judges those values itself (with the field's name).
    """
    number = _number(field, value)
    try:
        return float(number)
    except OverflowError:
        raise refused(field, value, "not a number a float holds") from None


def flag(field: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``, else raises (``bool()`` would take ``"no"``
    as true; numpy's ``True_`` is not Python's ``True``)."""
    if value is True or value is False:
        return value
    raise refused(field, value, f"True or False (a Python bool), not {_kind(value)}")


def latency_error(value: object, unit: str, name: str = "latency") -> InvalidArgumentError:
    """The one error of every binding for a latency that is negative, NaN, infinite or too
    large for the u64 nanoseconds of ``pgate_record``; the text is the same in C++, Go and Lua
    (every binding's tests check it against ``tests/vectors/latency.tsv``). ``name`` is the
    parameters' stem: ``latency`` (``latency_s``, ``latency_ns``), ``waited`` for a wait."""
    return InvalidArgumentError(
        Status.INVALID_ARGUMENT,
        f"invalid {name} = {shown(value)} {unit}: "
        "a latency must be finite, at least 0 and below 2^64 ns",
    )


def latency_ns(seconds: object, nanoseconds: object, name: str = "latency") -> int:
    """The latency given in seconds or in nanoseconds (exactly one), as u64 nanoseconds; the
    parameters are ``<name>_s`` and ``<name>_ns`` in the messages."""
    if (seconds is None) == (nanoseconds is None):
        raise InvalidArgumentError(
            Status.INVALID_ARGUMENT,
            f"invalid {name}_s = {shown(seconds)} with {name}_ns = {shown(nanoseconds)}: "
            "give exactly one of them",
        )
    if nanoseconds is not None:
        # An integer stays one, exactly (a float holds 2**53 + 1 as 2**53): no float round trip.
        exact = nanoseconds if type(nanoseconds) is int else _integral(nanoseconds)
        if exact is None:
            return _rounded(nanoseconds, 1.0, "ns", name)
        if 0 <= exact < _U64_LIMIT:
            return exact
        raise latency_error(nanoseconds, "ns", name)
    return _rounded(seconds, 1e9, "s", name)


def _rounded(value: object, scale: float, unit: str, name: str) -> int:
    """``value * scale`` rounded to the nearest whole nanosecond (half up), if that is a u64."""
    number = _number(f"{name}_{unit}", value)
    try:
        ns = float(number) * scale
    except OverflowError:  # an int beyond the largest float
        raise latency_error(value, unit, name) from None
    # NaN fails every comparison; the largest float below 2**64 rounds to itself.
    if not (math.isfinite(ns) and 0 <= ns < _U64_LIMIT):
        raise latency_error(value, unit, name)
    # Half a nanosecond rounds up, as in C++ and Lua (round() would round 2.5 to even, 2).
    return math.floor(ns + 0.5)
