"""The wheel's build step: bundles the native library into the package.

``pip wheel ./bindings/python`` (or ``pip install ./bindings/python``) runs
``cargo build --release -p promotion-gates-ffi`` in the checkout this file sits in and copies
the ``libpromotion_gates_ffi.so`` (``.dylib`` on macOS) that cargo says it wrote (with
``CARGO_BUILD_TARGET`` set, in ``target/<triple>/release``) next to ``_ffi.py``, without its debug
information on Linux when ``strip`` is on the PATH. ``PROMOTION_GATES_CARGO_FEATURES`` names
the library's cargo features (``etcd`` for the etcd state store): the build has them, instead of
replacing an etcd build in the target directory by one without. To bundle a library built
elsewhere, name it in ``PROMOTION_GATES_BUILD_LIBRARY``; cargo is not run then.

The project's ``LICENSE`` is copied next to this file (ignored by git) when it is built from
a checkout: ``pyproject.toml`` names it as the license file, which must lie in this directory;
an sdist carries its own copy.

The wheel is tagged ``py3-none-<platform>``: it holds no Python extension (the binding is
``ctypes``), so any Python 3.11+ on that platform can use it. Everything else about the
package is in ``pyproject.toml``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
#: Names a library to bundle, built beforehand; cargo is not run when it is set.
BUILD_LIBRARY_VAR = "PROMOTION_GATES_BUILD_LIBRARY"
#: The cargo features of the library's build, comma- or space-separated (``etcd``).
FEATURES_VAR = "PROMOTION_GATES_CARGO_FEATURES"


def _library_file_name() -> str:
    """The library's file name on this platform, as the package's loader spells it."""
    spec = importlib.util.spec_from_file_location(
        "_promotion_gates_ffi", HERE / "src" / "promotion_gates" / "_ffi.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot read {HERE / 'src' / 'promotion_gates' / '_ffi.py'}")
    ffi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ffi)
    return str(ffi._file_name())


def _built_library() -> Path:
    """The library to bundle: ``$PROMOTION_GATES_BUILD_LIBRARY``, or cargo's release build."""
    explicit = os.environ.get(BUILD_LIBRARY_VAR)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise RuntimeError(f"{BUILD_LIBRARY_VAR}={explicit!r}: no such file")
        return path
    if not (ROOT / "Cargo.toml").is_file() or not (ROOT / "ffi").is_dir():
        raise RuntimeError(
            f"{ROOT} is not a promotion-gates checkout: build from bindings/python of one, "
            f"or set {BUILD_LIBRARY_VAR} to a built {_library_file_name()}"
        )
    cargo = ["cargo", "build", "--release", "-p", "promotion-gates-ffi"]
    features = os.environ.get(FEATURES_VAR, "").replace(",", " ").split()
    if features:
        cargo += ["--features", ",".join(features)]
    # The JSON messages on stdout, the build's own on stderr as without the flag.
    built = subprocess.run(
        [*cargo, "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return _written_library(built.stdout, " ".join(cargo))


def _written_library(messages: str, command: str) -> Path:
    """The library a cargo build's JSON ``messages`` say it wrote: the path of its
    ``compiler-artifact``, not a path guessed from the target directory (with
    ``CARGO_BUILD_TARGET`` or ``build.target`` set, cargo writes ``target/<triple>/release``,
    and ``target/release`` holds an older build or none)."""
    name = _library_file_name()
    for line in messages.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        if message.get("reason") == "compiler-artifact":
            for file in message.get("filenames", []):
                if Path(file).name == name:
                    return Path(file)
    raise RuntimeError(f"`{command}` named no {name} it wrote")


def _copy_license() -> None:
    """Copies the checkout's ``LICENSE`` here, where ``license-files`` reads it (an sdist has
    it here already)."""
    source = ROOT / "LICENSE"
    if source.is_file():
        shutil.copyfile(source, HERE / "LICENSE")
    elif not (HERE / "LICENSE").is_file():
        raise RuntimeError(f"no LICENSE in {HERE} or {ROOT}")


class BuildWithLibrary(build_py):
    """``build_py`` that also copies the native library into the built package."""

    def run(self) -> None:
        super().run()
        bundled = Path(self.build_lib) / "promotion_gates" / _library_file_name()
        shutil.copyfile(_built_library(), bundled)
        strip = shutil.which("strip")
        if strip is not None and sys.platform.startswith("linux"):
            subprocess.run([strip, "--strip-debug", str(bundled)], check=True)


class WithNativeLibrary(Distribution):
    """Says the package holds native code, so it installs into platlib and the wheel is not
    pure."""

    def has_ext_modules(self) -> bool:
        return True


class PlatformWheel(bdist_wheel):
    """A wheel for this platform (it holds a native library) and any Python 3."""

    def get_tag(self) -> tuple[str, str, str]:
        _, _, platform = super().get_tag()
        return "py3", "none", platform


# Run as setuptools runs it (as __main__), not when a test imports it.
if __name__ == "__main__":
    _copy_license()
    setup(
        distclass=WithNativeLibrary,
        cmdclass={"build_py": BuildWithLibrary, "bdist_wheel": PlatformWheel},
    )
