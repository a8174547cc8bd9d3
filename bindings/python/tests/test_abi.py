"""The ctypes declarations in `_ffi.py` against the header cbindgen wrote from the Rust code.

The header is parsed (enums, struct fields in order, every prototype), and a C program
compiled with gcc prints each structure's size, alignment and field offsets for comparison
with ctypes.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from ctypes import POINTER, c_bool, c_char, c_char_p, c_double, c_size_t, c_uint32, c_uint64
from ctypes import c_void_p
from pathlib import Path
from typing import Any

import pytest
from conftest import HEADER

from promotion_gates import Environment, Forced, LogLevel, Recommendation, Recorded, Rule, Status
from promotion_gates import _ffi

STRUCTS = {
    "pgate_decision": _ffi.pgate_decision,
    "pgate_health": _ffi.pgate_health,
    "pgate_outcome_counts": _ffi.pgate_outcome_counts,
}

# The header's C types and the ctypes each must be declared as.
C_TO_CTYPES: dict[str, Any] = {
    "void": None,
    "bool": c_bool,
    "double": c_double,
    "uint32_t": c_uint32,
    "uint64_t": c_uint64,
    "size_t": c_size_t,
    "pgate_status": c_uint32,
    "pgate_environment": c_uint32,
    "pgate_recommendation": c_uint32,
    "pgate_forced": ctypes.c_uint8,
    "pgate_log_level": c_uint32,
    "const char *": c_char_p,
    "char *": POINTER(c_char),
    "const uint8_t *": c_char_p,
    "const uint8_t **": POINTER(c_void_p),
    "size_t *": POINTER(c_size_t),
    "double *": POINTER(c_double),
    "uint64_t *": POINTER(c_uint64),
    "pgate_environment *": POINTER(c_uint32),
    "bool *": POINTER(c_bool),
    "pgate_recorded *": POINTER(c_uint32),
    "const struct pgate_error *": c_void_p,
    "struct pgate_error *": c_void_p,
    "struct pgate_error **": POINTER(c_void_p),
    "const struct pgate_gate *": c_void_p,
    "struct pgate_gate *": c_void_p,
    "struct pgate_gate **": POINTER(c_void_p),
    "const struct pgate_decision *": POINTER(_ffi.pgate_decision),
    "struct pgate_decision *": POINTER(_ffi.pgate_decision),
    "struct pgate_health *": POINTER(_ffi.pgate_health),
    "const struct pgate_gate *const *": POINTER(c_void_p),
    "const struct pgate_outcome_counts *": POINTER(_ffi.pgate_outcome_counts),
    "void *": c_void_p,
    "pgate_log_callback": _ffi.pgate_log_callback,
}


def _code() -> str:
    """The header without comments and preprocessor lines."""
    text = HEADER.read_text(encoding="utf-8")
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _norm(c_type: str) -> str:
    c_type = re.sub(r"\s*\*", " *", c_type.strip())
    c_type = re.sub(r"\*\s+\*", "**", c_type)
    return re.sub(r"\s+", " ", c_type)


def header_enums() -> dict[str, dict[str, int]]:
    found = {}
    for name, body in re.findall(r"enum (\w+)\s*(?::\s*uint(?:8|32)_t\s*)?\{(.*?)\};", _code(), re.S):
        values = dict(re.findall(r"(\w+)\s*=\s*(\d+)", body))
        found[name] = {k: int(v) for k, v in values.items()}
    return found


def header_structs() -> dict[str, list[tuple[str, str]]]:
    found = {}
    for name, body in re.findall(r"typedef struct (\w+) \{(.*?)\} \1;", _code(), re.S):
        fields = []
        for decl in body.split(";"):
            if decl.strip():
                c_type, field = decl.strip().rsplit(None, 1)
                fields.append((field, _norm(c_type)))
        found[name] = fields
    return found


def _param_types(params: str) -> list[str]:
    """The types of a C parameter list's named parameters, normalized."""
    types = []
    for param in params.split(","):
        param = param.strip()
        if param == "void":
            continue
        c_type = param[: re.search(r"\w+$", param).start()]  # type: ignore[union-attr]
        types.append(_norm(c_type))
    return types


def header_callbacks() -> dict[str, tuple[str, list[str]]]:
    """The header's function pointer typedefs: name -> (return type, parameter types)."""
    found = {}
    for ret, name, params in re.findall(
        r"typedef\s+([^;()]+?)\s*\(\s*\*\s*(\w+)\s*\)\s*\(([^;]*?)\)\s*;", _code(), re.S
    ):
        found[name] = (_norm(ret), _param_types(params))
    return found


def header_functions() -> dict[str, tuple[str, list[str]]]:
    found = {}
    for statement in _code().split(";"):
        tail = re.split(r"[{}]", statement)[-1]
        m = re.fullmatch(r"\s*(.+?)\s*\b(pgate_\w+)\s*\((.*)\)\s*", tail, re.S)
        if not m:
            continue
        ret, name, params = m.groups()
        found[name] = (_norm(ret), _param_types(params))
    return found


@pytest.mark.parametrize(
    "enum_name, prefix, py_enum",
    [
        ("pgate_status", "PGATE_STATUS_", Status),
        ("pgate_environment", "PGATE_ENVIRONMENT_", Environment),
        ("pgate_recommendation", "PGATE_RECOMMENDATION_", Recommendation),
        ("pgate_recorded", "PGATE_RECORDED_", Recorded),
        ("pgate_rule", "PGATE_RULE_", Rule),
        ("pgate_forced", "PGATE_FORCED_", Forced),
        ("pgate_log_level", "PGATE_LOG_LEVEL_", LogLevel),
    ],
)
def test_enums_match_the_header(enum_name: str, prefix: str, py_enum: Any) -> None:
    in_header = header_enums()[enum_name]
    # Rule.NONE is the binding's own (no rule fired); pgate_forced has its NONE in the header.
    ours = {
        prefix + m.name: int(m.value) for m in py_enum if py_enum is not Rule or m.name != "NONE"
    }
    assert ours == in_header


def test_every_enum_of_the_header_is_compared() -> None:
    compared = {"pgate_status", "pgate_environment", "pgate_recommendation", "pgate_recorded"}
    compared |= {"pgate_rule", "pgate_forced", "pgate_log_level"}
    assert sorted(set(header_enums()) - compared) == [], "an enum no test compares"


def test_the_log_callback_type_matches_the_header() -> None:
    """``pgate_log_callback`` is a typedef, which ``header_functions`` does not parse, and
    ``C_TO_CTYPES`` maps its name to ``_ffi.pgate_log_callback`` itself: compared here, its
    return type and each parameter, as the trampoline receives them."""
    in_header = header_callbacks()
    assert sorted(in_header) == ["pgate_log_callback"], "a function pointer type not compared"
    ret, params = in_header["pgate_log_callback"]
    ours = _ffi.pgate_log_callback
    assert C_TO_CTYPES[ret] is ours._restype_, f"pgate_log_callback returns {ret}"
    assert len(params) == len(ours._argtypes_), f"pgate_log_callback takes {params}"
    for i, (c_type, declared) in enumerate(zip(params, ours._argtypes_)):
        assert C_TO_CTYPES[c_type] is declared, f"pgate_log_callback parameter {i}: {c_type}"


def test_the_evidence_capacity_matches_the_header() -> None:
    text = HEADER.read_text(encoding="utf-8")
    found = re.search(r"#define PGATE_EVIDENCE_CAPACITY (\d+)", text)
    assert found, "PGATE_EVIDENCE_CAPACITY is not in the header"
    assert int(found.group(1)) == _ffi.EVIDENCE_CAPACITY


def test_the_name_capacity_matches_the_header() -> None:
    text = HEADER.read_text(encoding="utf-8")
    found = re.search(r"#define PGATE_NAME_CAPACITY (\d+)", text)
    assert found, "PGATE_NAME_CAPACITY is not in the header"
    assert int(found.group(1)) == _ffi.NAME_CAPACITY


def test_the_flag_set_grace_matches_the_header() -> None:
    found = re.search(r"`FLAG_SET_GRACE_WRITES` \((\d+)\)", HEADER.read_text(encoding="utf-8"))
    assert found, "FLAG_SET_GRACE_WRITES is not in the header"
    assert int(found.group(1)) == _ffi.FLAG_SET_GRACE_WRITES


def test_status_names_match_the_library() -> None:
    for status in Status:
        assert _ffi.lib().pgate_status_str(status) == f"PGATE_STATUS_{status.name}".encode()
    assert _ffi.lib().pgate_status_str(999) == b"PGATE_STATUS_UNKNOWN"


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_fields_match_the_header_in_order_and_type(name: str) -> None:
    in_header = header_structs()[name]
    ours = [(f[0], f[1]) for f in STRUCTS[name]._fields_]
    assert [f for f, _ in ours] == [f for f, _ in in_header]
    for (field, c_type), (_, header_type) in zip(ours, in_header):
        assert C_TO_CTYPES[header_type] is c_type, f"{name}.{field}: {header_type}"


def test_every_function_is_declared_once_with_the_header_types() -> None:
    in_header = header_functions()
    assert len(in_header) >= 20, "the header parser found too few functions"
    unknown = sorted(set(_ffi.PROTOTYPES) - set(in_header))
    assert not unknown, f"declared in _ffi.py but not in the header: {unknown}"
    new = sorted(set(in_header) - set(_ffi.PROTOTYPES))
    # Every function of the C ABI is declared here (and wrapped: the test below); one added to
    # the header must be added to the binding in the same change.
    assert not new, f"the header has functions _ffi.py does not declare: {new}"
    for name, (restype, argtypes) in _ffi.PROTOTYPES.items():
        ret, params = in_header[name]
        assert C_TO_CTYPES[ret] is restype, f"{name} returns {ret}"
        assert len(argtypes) == len(params), f"{name} takes {params}"
        for i, (c_type, declared) in enumerate(zip(params, argtypes)):
            assert C_TO_CTYPES[c_type] is declared, f"{name} parameter {i}: {c_type}"


#: Declared functions no module calls, each with the call that covers it instead.
NOT_CALLED = {
    "pgate_error_status": "_check raises by the status the call returned, the same one",
    "pgate_document_check_slo": "Gate(config, slo) checks the SLO against the config as it "
    "opens the gate (the call is for a host that opens its store later, as nginx -t)",
    "pgate_metrics_prometheus": "metrics_prometheus(gate) is pgate_metrics_prometheus_gates of one",
    "pgate_record_abandoned": "Gate.record_abandoned is pgate_record_abandoned_as, its "
    "classification set aside",
}


def test_every_declared_function_is_called_by_the_package() -> None:
    """Declared is not wrapped: pgate_store_location was declared and never exposed."""
    package = Path(_ffi.__file__).parent
    sources = "\n".join(
        path.read_text(encoding="utf-8") for path in package.glob("*.py") if path.name != "_ffi.py"
    )
    called = {name for name in _ffi.PROTOTYPES if re.search(rf"\b{name}\b", sources)}
    assert sorted(set(_ffi.PROTOTYPES) - called - set(NOT_CALLED)) == [], "declared, never called"
    assert sorted(set(NOT_CALLED) & called) == [], "called after all: take it out of NOT_CALLED"
    assert set(NOT_CALLED) <= set(_ffi.PROTOTYPES)


def test_the_loaded_library_has_the_prototypes() -> None:
    loaded = _ffi.lib()
    for name, (restype, argtypes) in _ffi.PROTOTYPES.items():
        fn = getattr(loaded, name)
        assert fn.restype is restype and fn.argtypes == argtypes, name


def test_struct_layout_matches_the_c_compiler(tmp_path: Path) -> None:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to check the layout against")
    lines = []
    for name, struct in STRUCTS.items():
        lines.append(
            f'printf("{name} size %zu align %zu\\n", sizeof(struct {name}), '
            f"_Alignof(struct {name}));"
        )
        for field in (f[0] for f in struct._fields_):
            lines.append(
                f'printf("{name}.{field} offset %zu size %zu\\n", '
                f"offsetof(struct {name}, {field}), sizeof(((struct {name} *)0)->{field}));"
            )
    source = tmp_path / "layout.c"
    source.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"promotion_gates.h\"\n"
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "layout"
    subprocess.run(
        [gcc, "-std=c11", "-Wall", "-Werror", f"-I{HEADER.parent}", str(source), "-o", str(exe)],
        check=True,
    )
    printed = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    expected = []
    for name, struct in STRUCTS.items():
        expected.append(f"{name} size {ctypes.sizeof(struct)} align {ctypes.alignment(struct)}")
        for field in (f[0] for f in struct._fields_):
            member = getattr(struct, field)
            expected.append(f"{name}.{field} offset {member.offset} size {member.size}")
    assert printed.splitlines() == expected
    # The numbers themselves, for a reader (x86-64 and aarch64 alike).
    assert ctypes.sizeof(_ffi.pgate_decision) == 40
    assert ctypes.sizeof(_ffi.pgate_health) == 96
