"""Compiled-kernel variants: a kernel module's source with its switch lines rewritten.

A kernel whose layout flags (Black-76, per-row carry, which greeks to store, ...) are
module-level constants compiles to straight-line code for each combination. Each
variant is that module's text with the ``NAME = value`` switch lines replaced, written
once to :func:`generated_dir` under a content hash and imported from there, so Numba's
disk cache keeps it between processes (closures over flags would recompile every time).
The hash covers the package's own sources too (:func:`package_fingerprint`): Numba's
cache checks only the variant file itself, and a variant's text does not change when a
formula it inlines does (say after an upgrade), so without that the old compiled code
would be loaded.
Used by :mod:`fastgex._kernels` (GEX) and :mod:`fastgex._greeks_kernel`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from fastgex._jit import package_fingerprint

_LOCK = threading.Lock()


def generated_dir() -> Path:
    """Where generated kernel variants live (``FASTGEX_KERNEL_DIR`` overrides)."""
    override = os.environ.get("FASTGEX_KERNEL_DIR")
    if override:
        return Path(override)
    base = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "fastgex" / "kernels"


def rewrite_switches(source: str, switches: Mapping[str, object], template: str) -> str:
    """``source`` with each ``NAME = ...`` line of ``switches`` set to ``NAME = repr(value)``.

    Raises ``RuntimeError`` when a switch line is missing: the template changed shape,
    and compiling it anyway could give a kernel that silently ignores a flag.
    """
    for switch, value in switches.items():
        source, count = re.subn(
            rf"^{switch} = .*$", f"{switch} = {value!r}", source, count=1, flags=re.MULTILINE
        )
        if count != 1:
            raise RuntimeError(f"{template} template has no switch line for {switch}")
    return source


def _write_source(name: str, source: str) -> Path:
    for directory in (generated_dir(), Path(tempfile.gettempdir()) / "fastgex-kernels"):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"{name}.py"
            if not path.exists() or path.read_text(encoding="utf-8") != source:
                # per process and thread, then an atomic rename: no reader sees half a file
                temporary = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                temporary.write_text(source, encoding="utf-8")
                os.replace(temporary, path)
            return path
        except OSError:
            continue
    raise RuntimeError("no writable directory for generated kernels; set FASTGEX_KERNEL_DIR")


def load_variant(source: str, prefix: str) -> ModuleType:
    """Import ``source`` as module ``<prefix>_<hash>`` (once per process).

    The hash is of ``source`` and :func:`package_fingerprint`.

    A module whose import fails (a compile error, an interrupted import) is removed from
    ``sys.modules`` again, so the next call retries instead of returning a half-run
    module.
    """
    digest = hashlib.sha256((package_fingerprint() + source).encode("utf-8")).hexdigest()[:16]
    name = f"{prefix}_{digest}"
    with _LOCK:  # two threads asking for one new variant import it once
        module = sys.modules.get(name)
        if module is not None:
            return module
        path = _write_source(name, source)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
