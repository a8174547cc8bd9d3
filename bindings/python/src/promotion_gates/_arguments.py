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

#: The library's ``MAX_DOCUMENT_BYTES`` (``src/limits.rs``): the longest JSON config it reads.
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024


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
    nothing (:data:`INVISIBLE`) is escaped, as the library escapes it: ``'beta\\u2800'``.

    The repr is never built whole (:class:`_Writer`): a list holding one inner list many
    times over, whose repr would be exabytes, is shown at once with its length, and one
    whose length takes more than :data:`_MAX_COUNTED_PARTS` parts to count (it holds itself,
    and the same lists many times) ends with ``...(too long to count)``."""
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
        head, counted = _Writer().shown(value)
    except ValueError:  # an int past sys.get_int_max_str_digits() has no decimal repr
        if isinstance(value, int):
            return f"<an integer of {value.bit_length()} bits>"
        return f"<a {type(value).__name__}>"
    except Exception:  # a host's __repr__ that raises; a structure nested too deeply for repr
        return f"<a {type(value).__name__}>"
    raw = head.encode("utf-8", "surrogatepass")
    cut = raw[:MAX_SHOWN_VALUE_BYTES].decode("utf-8", "ignore")
    if counted is None:
        return f"{cut}...(too long to count)"
    if counted <= MAX_SHOWN_VALUE_BYTES:
        return head
    return f"{cut}...({counted} bytes)"


#: How many parts (containers and the values in them) :func:`shown` reads to count the length
#: of a value's repr; past them it says ``...(too long to count)``.
_MAX_COUNTED_PARTS = 250_000

#: The containers whose repr :class:`_Writer` writes itself, with the text it writes for one
#: met again inside itself (as ``repr`` writes it): a list, tuple or dict of a subclass that
#: keeps the repr of its base writes as the base.
_OPENINGS = {list: ("[", "]", "[...]"), tuple: ("(", ")", "(...)"), dict: ("{", "}", "{...}")}


class _Writer:
    """``repr(value)`` written up to :data:`MAX_SHOWN_VALUE_BYTES` and counted, not built, past
    them. ``repr`` writes a list holding one inner list twice twice over, so ``x = [x, x]``
    sixty times over would be 2**60 bytes: here the length of each container's repr is
    counted once (each value's repr is made once), and the count stops after
    :data:`_MAX_COUNTED_PARTS` parts. A container that holds, at any depth, one inside itself
    (where ``repr`` writes ``[...]``) is counted anew at each place: its repr depends on the
    containers around it."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.written = 0  # UTF-8 bytes in pieces
        self.parts = 0
        # id -> (the object, kept alive so that its id is not reused; its repr's length)
        self.lengths: dict[int, tuple[object, int]] = {}
        self.around: set[int] = set()  # the containers being written

    def shown(self, value: object) -> tuple[str, int | None]:
        """The first bytes of ``repr(value)`` (at least MAX_SHOWN_VALUE_BYTES + 1 when longer)
        and its length in UTF-8 bytes, ``None`` past the count's bound."""
        try:
            size, _ = self._write(value)
        except _Uncounted:
            size = None
        return "".join(self.pieces), size

    def _text(self, text: str) -> int:
        size = len(text.encode("utf-8", "surrogatepass"))
        if self.written <= MAX_SHOWN_VALUE_BYTES:
            self.pieces.append(text)
            self.written += size
        return size

    def _write(self, value: object) -> tuple[int, bool]:
        """Writes ``value``'s repr while the head is short; returns its length and whether it
        met a container inside itself (its length is then not remembered)."""
        self.parts += 1
        if self.parts > _MAX_COUNTED_PARTS:
            raise _Uncounted
        kind = _container(value)
        if kind is not None and id(value) in self.around:
            return self._text(kind[2]), True
        known = self.lengths.get(id(value))
        if known is not None and self.written > MAX_SHOWN_VALUE_BYTES:
            return known[1], False
        if kind is None:
            size = self._text(_escaped(repr(value)))
            self.lengths[id(value)] = (value, size)
            return size, False
        self.around.add(id(value))
        try:
            size, cyclic = self._write_items(value, kind[0], kind[1])
        finally:
            self.around.discard(id(value))
        if not cyclic:
            self.lengths[id(value)] = (value, size)
        return size, cyclic

    def _write_items(self, value: object, opening: str, closing: str) -> tuple[int, bool]:
        if isinstance(value, (set, frozenset)) and not value:
            return self._text(f"{type(value).__name__}()"), False
        if isinstance(value, dict):
            items: list[tuple[object, ...]] = list(dict.items(value))
        else:
            items = [(item,) for item in list(value)]  # type: ignore[call-overload]
        size = self._text(opening)
        cyclic = False
        for index, item in enumerate(items):
            if index:
                size += self._text(", ")
            for position, part in enumerate(item):
                if position:
                    size += self._text(": ")
                part_size, part_cyclic = self._write(part)
                size += part_size
                cyclic = cyclic or part_cyclic
        if isinstance(value, tuple) and len(items) == 1:
            size += self._text(",")
        return size + self._text(closing), cyclic


class _Uncounted(Exception):
    """The length of a value's repr is past what :class:`_Writer` counts."""


def _container(value: object) -> tuple[str, str, str] | None:
    """How :class:`_Writer` writes ``value``: its opening, closing and the text for it met
    inside itself; ``None`` for a value whose own ``repr`` is taken."""
    kind = type(value)
    if kind is set:
        return ("{", "}", "set(...)")
    if kind is frozenset:
        return ("frozenset({", "})", "frozenset(...)")
    for base, texts in _OPENINGS.items():
        if isinstance(value, base) and kind.__repr__ is base.__repr__:
            return texts
    return None


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
            try:
                written, _ = _as_dumped(plain)
            except _TooLong as long:
                raise refused(
                    what,
                    value,
                    f"above {MAX_DOCUMENT_BYTES} bytes (MAX_DOCUMENT_BYTES) as JSON: at least "
                    f"{long.counted} bytes, a list or mapping held in many places written at each",
                ) from None
            return json.dumps(written, allow_nan=False).encode("utf-8")
        except InvalidArgumentError:
            raise
        except RecursionError:
            raise refused(
                what, value, "not JSON: nested deeper than Python's recursion limit"
            ) from None
        except (TypeError, ValueError) as error:  # a value JSON has no form for
            try:
                found = _not_finite(value)
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


class _TooLong(Exception):
    """A document :func:`_as_dumped` stopped counting past :data:`MAX_DOCUMENT_BYTES`."""

    def __init__(self, counted: int) -> None:
        super().__init__(counted)
        self.counted = counted  # the bytes counted when it stopped, above the limit


#: How many characters of a string :func:`_as_dumped` escapes at once to count them.
_ESCAPED_AT_ONCE = 1 << 16


def _as_dumped(document: object) -> tuple[object, int]:
    """The document as ``json.dumps(document, allow_nan=False)`` reads it, with the bytes it
    writes, without writing them; raises :class:`_TooLong` once they pass
    :data:`MAX_DOCUMENT_BYTES`, and json's own error for what it refuses, in the order it would.

    Each list, tuple and dict is read once, as json reads it (a subclass by its ``__iter__``
    or ``items()``), into a plain list or dict: dumping that copy writes what was counted,
    whatever a subclass would give a second time. One held in many places is read at its
    first place and counted at each, as json writes it (``x = [x, x]`` sixty times over stops
    at once); a string counts as ``ensure_ascii`` escapes it, a number as its ``repr``. Each
    part adds a byte or more, and counting stops as soon as the limit is passed: the work is
    bounded by the limit, whatever the document holds (but a subclass's own code)."""
    copies: dict[int, tuple[object, object, int]] = {}  # id -> (the original, alive; copy; bytes)
    around: set[int] = set()  # the containers being read: one met again is in itself
    total = 0  # the bytes counted so far, brackets and separators with the part they follow
    escape = json.encoder.encode_basestring_ascii

    def text(value: str) -> int:
        if type(value) is not str:
            value = str.__str__(value)  # a subclass's characters, as json reads them
        if len(value) <= _ESCAPED_AT_ONCE:
            return len(escape(value))
        size = len(value) + 2  # no escaping makes it shorter
        if total + size > MAX_DOCUMENT_BYTES:
            raise _TooLong(total + size)
        size = 2
        for start in range(0, len(value), _ESCAPED_AT_ONCE):
            size += len(escape(value[start : start + _ESCAPED_AT_ONCE])) - 2
            if total + size > MAX_DOCUMENT_BYTES:
                raise _TooLong(total + size)
        return size

    def integer(value: int) -> int:
        # A lower bound of its digits first: a huge int's repr is never built past the limit.
        digits = (int.bit_length(value) - 1) * 3 // 10
        if total + digits > MAX_DOCUMENT_BYTES:
            raise _TooLong(total + digits)
        return len(int.__repr__(value))

    def finite(value: float) -> int:
        if not math.isfinite(value):
            json.dumps(value, allow_nan=False)  # raises json's ValueError
        return len(float.__repr__(value))

    def key(value: object) -> int:
        if value is None or value is True or value is False:
            return len(json.dumps(value)) + 2
        kind = type(value)
        if issubclass(kind, str):
            return text(value)  # type: ignore[arg-type]
        if issubclass(kind, float):
            return finite(value) + 2  # type: ignore[arg-type]
        if issubclass(kind, int):
            return integer(value) + 2  # type: ignore[arg-type]
        raise TypeError(f"keys must be str, int, float, bool or None, not {kind.__name__}")

    def scalar(value: object, kind: type) -> int:
        if value is None or value is True:
            return 4
        if value is False:
            return 5
        if issubclass(kind, str):
            return text(value)  # type: ignore[arg-type]
        if issubclass(kind, int):
            return integer(value)  # type: ignore[arg-type]
        if issubclass(kind, float):
            return finite(value)  # type: ignore[arg-type]
        json.dumps(value)  # raises json's TypeError
        raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")

    def read(item: object) -> object:
        nonlocal total
        kind = type(item)
        if kind is str or not issubclass(kind, (list, tuple, dict)):
            total += scalar(item, kind)
            if total > MAX_DOCUMENT_BYTES:
                raise _TooLong(total)
            return item
        known = copies.get(id(item))
        if known is not None:
            total += known[2]
            if total > MAX_DOCUMENT_BYTES:
                raise _TooLong(total)
            return known[1]
        if id(item) in around:
            raise ValueError("Circular reference detected")
        around.add(id(item))
        before = total
        try:
            copy: list[object] | dict[object, object]
            if issubclass(kind, dict):
                copy = {}
                pairs = dict.items(item) if kind is dict else item.items()  # type: ignore
                for pair in pairs:
                    if not isinstance(pair, tuple) or tuple.__len__(pair) != 2:
                        raise ValueError("items must return 2-tuples")
                    name, part = tuple.__getitem__(pair, 0), tuple.__getitem__(pair, 1)
                    total += key(name) + 4  # ": ", and "{" and "}" or ", "
                    copy[name] = read(part)
            else:
                copy = []
                for part in item:  # type: ignore[attr-defined]
                    total += 2  # "[" and "]" or ", "
                    copy.append(read(part))
            if not copy:
                total += 2  # "{}" or "[]"
        finally:
            around.discard(id(item))
        copies[id(item)] = (item, copy, total - before)
        return copy

    written = read(document)
    if total > MAX_DOCUMENT_BYTES:  # an empty dict or list last
        raise _TooLong(total)
    return written, total


#: Why a NaN or an infinity in a document is refused.
_NO_NAN = "JSON has no NaN or infinity"

#: How many containers and values :func:`_not_finite` looks at, at most.
_MAX_SEARCHED_PARTS = 250_000


def _not_finite(value: object) -> tuple[str, float] | None:
    """The key path (``a.b[2].c``) and value of the first NaN or infinity in a document to be
    dumped, if any. Each container is looked into once (one held in many places, or in itself,
    which ``json.dumps`` also refuses, at its first place), and at most
    :data:`_MAX_SEARCHED_PARTS` parts: past them, none is found."""
    seen: set[int] = set()
    kept: list[object] = []  # the containers seen, alive, so that no id is reused
    stack: list[tuple[str, object]] = [("", value)]
    parts = 0
    while stack:
        path, item = stack.pop()
        parts += 1
        if parts > _MAX_SEARCHED_PARTS:
            return None
        if isinstance(item, float):
            if not math.isfinite(item):
                return path, item
            continue
        if id(item) in seen:
            continue
        if isinstance(item, Mapping):
            inner = [(f"{path}.{key}" if path else str(key), part) for key, part in item.items()]
        elif isinstance(item, (list, tuple)):
            inner = [(f"{path}[{index}]", part) for index, part in enumerate(item)]
        else:
            continue
        seen.add(id(item))
        kept.append(item)
        stack.extend(reversed(inner))
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
    # Not floor(ns + 0.5): that sum rounds 0.49999999999999994 up to 1.0, and an odd whole
    # number from 2**52 on to the even one above; ns - whole is exact.
    whole = math.floor(ns)
    return whole + 1 if ns - whole >= 0.5 else whole
