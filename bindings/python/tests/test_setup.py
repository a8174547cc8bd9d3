"""The wheel's build step (setup.py) bundles the library cargo says it wrote: with
``CARGO_BUILD_TARGET`` (or ``build.target``) set, cargo writes ``target/<triple>/release``,
and a library left in ``target/release`` by an earlier build is not the one built."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from conftest import PYTHON_DIR


def _setup_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """setup.py, imported (not run as setuptools runs it, so it builds nothing). Its wheel
    command comes from the setuptools pyproject.toml asks for (77 or later), which ``pip
    wheel`` installs in its own environment; with an older one a stand-in takes its place
    here, as the build step these tests call does not use it."""
    try:
        importlib.import_module("setuptools.command.bdist_wheel")
    except ModuleNotFoundError:
        stand_in = ModuleType("setuptools.command.bdist_wheel")
        stand_in.bdist_wheel = type("bdist_wheel", (), {})  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, stand_in.__name__, stand_in)
    spec = importlib.util.spec_from_file_location("promotion_gates_setup", PYTHON_DIR / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_library_bundled_is_the_one_cargo_wrote_not_a_stale_one_in_target_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup = _setup_module(monkeypatch)
    name = setup._library_file_name()
    target = tmp_path / "target"
    stale = target / "release" / name
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier build")
    built = target / "x86_64-unknown-linux-gnu" / "release" / name
    artifact = {
        "reason": "compiler-artifact",
        "target": {"kind": ["staticlib", "cdylib"], "name": "promotion_gates_ffi"},
        "filenames": [str(built.with_name("libpromotion_gates_ffi.a")), str(built)],
        "fresh": False,
    }
    # A cargo that builds for a target triple, as CARGO_BUILD_TARGET makes the real one do.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cargo = bin_dir / "cargo"
    cargo.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  build) mkdir -p '{built.parent}' && printf built > '{built}'\n"
        f"    printf '%s\\n' '{json.dumps(artifact)}' '{{\"reason\": \"build-finished\"}}' ;;\n"
        f"  metadata) printf '%s\\n' '{json.dumps({'target_directory': str(target)})}' ;;\n"
        "esac\n"
    )
    cargo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.delenv(setup.BUILD_LIBRARY_VAR, raising=False)
    monkeypatch.delenv(setup.FEATURES_VAR, raising=False)
    assert setup._built_library() == built


def test_a_build_that_names_no_library_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _setup_module(monkeypatch)
    with pytest.raises(RuntimeError, match="named no libpromotion_gates_ffi"):
        setup._written_library('{"reason": "build-finished"}\n', "cargo build")
