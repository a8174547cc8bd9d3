"""Shared setup: import the package from this checkout, find the repo, load the vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
REPO = PYTHON_DIR.parents[1]
sys.path.insert(0, str(PYTHON_DIR / "src"))

HEADER = REPO / "include" / "promotion_gates.h"
VECTORS = REPO / "tests" / "vectors" / "routing.json"
LATENCY_VECTORS = REPO / "tests" / "vectors" / "latency.tsv"
OVERRIDE_VECTORS = REPO / "tests" / "vectors" / "overrides.tsv"


def forcing_value(field: str) -> bytes | None:
    """A VALUE field of the override vectors: ``-`` none, ``hex:`` and the bytes in hex, or
    the field's own UTF-8 bytes."""
    if field == "-":
        return None
    if field.startswith("hex:"):
        return bytes.fromhex(field[len("hex:") :])
    return field.encode()


def override_vectors() -> tuple[dict[str, str], list[tuple[str, str, bytes | None, bool, str]]]:
    """The shared override cases: the config documents by name, and each route line as
    (config name, request id, forcing value or None, is_canary, forced)."""
    configs: dict[str, str] = {}
    cases: list[tuple[str, str, bytes | None, bool, str]] = []
    for line in OVERRIDE_VECTORS.read_text(encoding="utf-8").split("\n"):
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        if fields[0] == "config":
            configs[fields[1]] = fields[2]
        else:
            kind, config, rid, value, is_canary, forced = fields
            assert kind == "route", line
            cases.append((config, rid, forcing_value(value), is_canary == "1", forced))
    assert len(cases) >= 45 and len(configs) >= 5, OVERRIDE_VECTORS
    return configs, cases


def latency_vectors() -> list[tuple[int | float, str]]:
    """The shared latency cases: (the latency in ns, as an int or a float, what to expect)."""
    cases: list[tuple[int | float, str]] = []
    for line in LATENCY_VECTORS.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            kind, ns, expect = line.split("\t")
            cases.append((int(ns) if kind == "int" else float(ns), expect))
    assert cases, LATENCY_VECTORS
    return cases


def run_child(source: str, *args: str) -> str:
    """Runs `source` in a child Python that imports this checkout's package, so that a crash
    fails the calling test rather than killing pytest; returns its stdout, failing on a
    non-zero exit (a signal is a negative one). The child takes SIGINT as Python's default
    KeyboardInterrupt even when the tests run as a shell's background job, which starts with
    SIGINT ignored (Python then installs no handler for it, and the tests of Ctrl-C fail)."""
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR / "src"))
    take_sigint = "import signal as _s; _s.signal(_s.SIGINT, _s.default_int_handler)\n"
    run = subprocess.run(
        [sys.executable, "-c", take_sigint + source, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr[-4000:]}"
    return run.stdout


def canary(percent: float, **fields: Any) -> dict[str, Any]:
    """A config dict for a canary at `percent`, with extra fields."""
    return {"environment": {"canary": {"traffic_percent": percent}}, **fields}


def request_id(vector: dict[str, Any]) -> bytes:
    """A vector's request id, by the rules in the vector file's header."""
    kinds = [k for k in ("id", "id_hex", "id_rule") if k in vector]
    assert len(kinds) == 1, f"{vector['name']}: needs exactly one of id, id_hex, id_rule"
    if "id" in vector:
        return str(vector["id"]).encode("utf-8")
    if "id_hex" in vector:
        return bytes.fromhex(vector["id_hex"])
    unit = vector["id_rule"]["repeat"].encode("utf-8")
    length = vector["id_rule"]["length"]
    return bytes((unit * (length // len(unit) + 1))[:length])


@pytest.fixture(scope="session")
def vector_file() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert data["header"]["format_version"] == 1, "a new vector format needs a new reader"
    assert data["vectors"], f"{VECTORS} holds no vectors"
    return data
