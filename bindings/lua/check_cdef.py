#!/usr/bin/env python3
"""Checks the LuaJIT module's `ffi.cdef` declarations against the C header cbindgen writes.

Usage: check_cdef.py HEADER LUA_MODULE. Every function, struct and typedef the module declares
must be in the header with the same types: a function's return type and each parameter's type
in order (names may differ), a struct's fields in order with their types, a typedef's type
(the header's C99/C11 form: its enums are `uint32_t`). One deliberate difference is allowed:
where the header takes bytes as `const uint8_t *` (or `const uint8_t **`), the module may
declare `const char *` (`const char **`): the same ABI, and LuaJIT passes a Lua string to it
without a copy. A struct's definition must also be the only declaration of its `cdef` block:
LuaJIT stops a block at its first error, so a host that declared the struct first would leave
the rest of the block undeclared. Each name must be declared once in the whole module: LuaJIT
keeps the first declaration of a function or typedef and silently ignores a different one after
it, so a stale earlier declaration would be the one used (this script compared only the last).
Every function of the header must be declared, but for those
`NOT_DECLARED` names with its reason. Prints each mismatch; exits 1 on a mismatch, a header
function the module does not declare and `NOT_DECLARED` does not name, a name the module
declares twice, or a name of
`NOT_DECLARED` that the module declares or the header no longer has. (test.lua compares the
header's enum values and constants with the module's tables.)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# Types the module may declare in place of the header's, parameter for parameter.
SAME_ABI = {("const uint8_t *", "const char *"), ("const uint8_t **", "const char **")}

# The header functions the module leaves out on purpose, each with its reason (the README's).
NOT_DECLARED = {
    "pgate_set_log_callback": "the library calls its log callback on its own threads too (a state "
    "store's), where a LuaJIT callback must not run",
}


def code(text: str) -> str:
    """C declarations without comments, preprocessor lines, `extern "C"` and enum bodies."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'extern\s+"C"\s*\{', "", text)
    lines = text.splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#") and line.strip() != "}")
    return re.sub(r"\benum\s+\w+[^{;]*\{.*?\}\s*;", "", text, flags=re.S)


def norm(c_type: str) -> str:
    """A C type in one spelling: no `struct` keyword, `T *`, `T **`, single spaces."""
    c_type = re.sub(r"\bstruct\s+", "", c_type.strip())
    c_type = re.sub(r"\s*\*", " *", c_type)
    c_type = re.sub(r"\*\s+\*", "**", c_type)
    return re.sub(r"\s+", " ", c_type).strip()


def split_decl(decl: str) -> tuple[str, str]:
    """`const char *name` -> (`const char *`, `name`)."""
    m = re.fullmatch(r"(.*?)(\w+)", decl.strip(), re.S)
    if m is None:
        raise ValueError(f"not a declaration: {decl!r}")
    return norm(m.group(1)), m.group(2)


def declarations(text: str, repeated: list[str] | None = None) -> dict[str, tuple[str, object]]:
    """name -> ("struct", [(field, type)]) | ("typedef", {types}) | ("function", (ret, [types])).

    A name declared more than once is appended to `repeated` (when given) at each declaration
    after its first; the header's typedefs may repeat (each of its forms is kept in the set)."""
    found: dict[str, tuple[str, object]] = {}
    c = code(text)

    def seen(name: str) -> None:
        if repeated is not None and name in found:
            repeated.append(name)

    for name, body in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\1\s*;", c, re.S):
        fields = [split_decl(d)[::-1] for d in body.split(";") if d.strip()]
        seen(name)
        found[name] = ("struct", fields)
    c = re.sub(r"typedef\s+struct\s+(\w+)\s*\{.*?\}\s*\1\s*;", "", c, flags=re.S)
    for statement in c.split(";"):
        statement = " ".join(statement.split())
        if not statement:
            continue
        if statement.startswith("typedef"):
            m = re.fullmatch(r"typedef (.+?) (\w+)", statement)
            if m:  # plain typedefs; a function-pointer typedef is not matched and not compared
                seen(m.group(2))
                kind, types = found.get(m.group(2), ("typedef", set()))
                assert isinstance(types, set)
                types.add(norm(m.group(1)))
                found[m.group(2)] = ("typedef", types)
            continue
        m = re.fullmatch(r"(.+?)\b(pgate_\w+)\s*\((.*)\)", statement)
        if m:
            ret, name, params = m.groups()
            types = [split_decl(p)[0] for p in params.split(",") if p.strip() not in ("", "void")]
            seen(name)
            found[name] = ("function", (norm(ret), types))
    return found


def mismatches(header: dict[str, tuple[str, object]], module: dict[str, tuple[str, object]]) -> list[str]:
    problems = []
    for name, (kind, ours) in sorted(module.items()):
        if name not in header:
            problems.append(f"{name}: declared in the module, not in the header")
            continue
        theirs_kind, theirs = header[name]
        if theirs_kind != kind:
            problems.append(f"{name}: a {kind} in the module, a {theirs_kind} in the header")
        elif kind == "typedef":
            assert isinstance(ours, set) and isinstance(theirs, set)
            if not ours <= theirs:
                problems.append(f"{name}: typedef {sorted(ours)} in the module, {sorted(theirs)} in the header")
        elif kind == "struct":
            assert isinstance(ours, list) and isinstance(theirs, list)
            if len(ours) != len(theirs):
                problems.append(f"{name}: {len(ours)} fields in the module, {len(theirs)} in the header")
            for i, (mine, want) in enumerate(zip(ours, theirs)):
                if mine != want:
                    problems.append(f"{name} field {i}: {mine} in the module, {want} in the header")
        else:
            assert isinstance(ours, tuple) and isinstance(theirs, tuple)
            (ret, params), (want_ret, want_params) = ours, theirs
            if ret != want_ret:
                problems.append(f"{name}: returns {ret} in the module, {want_ret} in the header")
            if len(params) != len(want_params):
                problems.append(f"{name}: takes {params} in the module, {want_params} in the header")
                continue
            for i, (mine, want) in enumerate(zip(params, want_params)):
                if mine != want and (want, mine) not in SAME_ABI:
                    problems.append(f"{name} parameter {i}: {mine} in the module, {want} in the header")
    return problems


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: check_cdef.py HEADER LUA_MODULE", file=sys.stderr)
        return 2
    header = declarations(Path(sys.argv[1]).read_text(encoding="utf-8"))
    source = Path(sys.argv[2]).read_text(encoding="utf-8")
    blocks = re.findall(r"\bcdef\s*\[\[(.*?)\]\]", source, re.S)
    module: dict[str, tuple[str, object]] = {}
    problems = []
    for block in blocks:
        repeated: list[str] = []
        declared = declarations(block, repeated)
        repeated += [name for name in declared if name in module]
        for name in sorted(set(repeated)):
            problems.append(f"{name}: declared more than once in the module (LuaJIT keeps the first "
                            "declaration and ignores a different one after it: declare each name once)")
        module.update(declared)
        structs = re.findall(r"typedef\s+struct\s+(\w+)\s*\{.*?\}\s*\1\s*;", code(block), re.S)
        rest = re.sub(r"typedef\s+struct\s+(\w+)\s*\{.*?\}\s*\1\s*;", "", code(block), flags=re.S)
        if structs and (len(structs) > 1 or rest.strip()):
            problems.append(f"struct {', '.join(structs)}: not alone in its cdef block (a host that "
                            "declared it first would leave the rest of the block undeclared)")
    functions = [n for n, (k, _) in module.items() if k == "function"]
    if len(functions) < 20 or len([n for n, (k, _) in header.items() if k == "function"]) < 20:
        print("check_cdef: the parser found too few functions", file=sys.stderr)
        return 1
    problems += mismatches(header, module)
    in_header = {n for n, (k, _) in header.items() if k == "function"}
    for name in sorted(in_header - set(module) - set(NOT_DECLARED)):
        problems.append(f"{name}: in the header, not declared in the module (declare it, or name it "
                        "in NOT_DECLARED with the reason)")
    for name, reason in sorted(NOT_DECLARED.items()):
        if name in module:
            problems.append(f"{name}: declared in the module, yet NOT_DECLARED says: {reason}")
        elif name not in in_header:
            problems.append(f"{name}: in NOT_DECLARED, not in the header")
    for problem in problems:
        print("cdef mismatch:", problem, file=sys.stderr)
    print(f"cdef: {len(module)} declarations in {len(blocks)} blocks checked against the header; "
          f"left out on purpose: {', '.join(sorted(NOT_DECLARED))}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
