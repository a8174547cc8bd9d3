"""The docs agree with the code: the package docstring's example runs on current methods and
names the library's sources in the loader's order; the README lists every field of a Decision
and every exception, and when the rare ones are raised; the Health docs name every recommendation."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest
from conftest import PYTHON_DIR

import promotion_gates as pg
from promotion_gates import Decision, Gate, Recommendation, errors, judge, telemetry

README = (PYTHON_DIR / "README.md").read_text(encoding="utf-8")

#: The loader's sources in its order, as the docs name them (see ``_ffi._load``).
SOURCES = ["$PROMOTION_GATES_LIBRARY", "wheel", "target/release", "system loader"]


def _positions(text: str) -> list[int]:
    return [text.find(source) for source in SOURCES]


def test_the_package_docs_name_the_library_sources_in_the_loaders_order() -> None:
    assert pg.__doc__ is not None
    loader = README[README.index("The library is loaded on first use") :]
    loader = loader[: loader.index("library_path()")]
    loading = inspect.getdoc(pg._ffi._load) or ""
    for where, text in [("__init__", pg.__doc__), ("README", loader), ("_load", loading)]:
        found = _positions(" ".join(text.split()))
        assert -1 not in found and found == sorted(found), (where, dict(zip(SOURCES, found)))


def test_the_package_docs_example_runs_without_deprecated_methods(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def deprecated(self: Gate) -> None:
        raise AssertionError("Gate.health() is deprecated: the example should read_health()")

    monkeypatch.setattr(Gate, "health", deprecated)
    assert pg.__doc__ is not None
    example = re.search(r"::\n\n((?:    .*\n|\n)+)", pg.__doc__)
    assert example, "the package docstring has no example"
    exec(compile(inspect.cleandoc(example.group(1)), "promotion_gates.__doc__", "exec"), {})
    assert capsys.readouterr().out.strip() in {r.name for r in Recommendation}


def test_the_readme_lists_every_field_of_a_decision() -> None:
    found = re.search(r"`Decision` is a frozen dataclass: (.*?)\. ", README, re.S)
    assert found, "the README does not list the fields of a Decision"
    listed = re.findall(r"`(\w+)`", found.group(1))
    fields = [f.name for f in dataclasses.fields(Decision) if f.init]
    assert [name for name in listed if name in fields] == fields


def test_the_readme_names_every_exception_and_the_flag_errors_under_flagerror() -> None:
    assert [name for name in errors.__all__ if f"`{name}`" not in README] == []
    table = README[README.index("## Exceptions") :]
    flag_errors = sorted(
        e.__name__
        for e in vars(errors).values()
        if isinstance(e, type) and e.__base__ is errors.FlagError
    )
    row = re.search(r"\| `FlagError` \| \| base of the (\w+) flag errors below \|", table)
    assert row, "the FlagError row"
    assert row.group(1) == {2: "two", 3: "three", 4: "four"}[len(flag_errors)]
    below = table[row.end() :].split("\n")[1 : len(flag_errors) + 1]
    assert sorted(re.findall(r"^\| `(\w+)`", "\n".join(below), re.M)) == flag_errors


def test_the_readme_says_when_the_rare_errors_are_raised() -> None:
    # It said the binding never provoked NullPointerError or BufferTooSmallError.
    start = README.index("Three more are rare:")
    rare = " ".join(README[start : README.index("## Tests and timing")].split())
    assert "`NullPointerError`: a call on a `Gate` brought back to life after the garbage" in rare
    tries = re.search(r"`BufferTooSmallError`: .* after (\d+) calls .* after (\d+) for `store_l", rare)
    assert tries, "the BufferTooSmallError item"
    assert int(tries.group(1)) == telemetry._ATTEMPTS
    assert f"for _ in range({tries.group(1)}):" in inspect.getsource(Gate._json_with)
    assert f"for _ in range({tries.group(2)}):" in inspect.getsource(pg.store_location)
    assert "`IndexOutOfRangeError` exists for completeness" in rare


def test_the_health_docs_name_every_recommendation() -> None:
    source = inspect.getsource(judge.Health)
    doc = re.search(r"((?:    #:.*\n)+)    recommendation: Recommendation", source)
    assert doc, "Health.recommendation has no doc comment"
    assert [r.name for r in Recommendation if r.name not in doc.group(1)] == []
