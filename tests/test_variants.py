"""Kernel variants (fastgex._variants): switch rewriting and a failed import's cleanup."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastgex
from fastgex import _fastmath, _jit, _variants


def test_rewrite_switches_sets_each_line_and_refuses_a_missing_one():
    source = "A = 1\nB = False\nUSE_A = A\n"
    assert _variants.rewrite_switches(source, {"A": 7, "B": True}, "t") == (
        "A = 7\nB = True\nUSE_A = A\n"
    )
    with pytest.raises(RuntimeError, match="no switch line for C"):
        _variants.rewrite_switches(source, {"C": 1}, "t")


def test_load_variant_imports_once_and_forgets_a_failed_import(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGEX_KERNEL_DIR", str(tmp_path))
    module = _variants.load_variant("VALUE = 3\n", "fastgex_test_variant")
    assert module.VALUE == 3 and module.__file__.startswith(str(tmp_path))
    assert _variants.load_variant("VALUE = 3\n", "fastgex_test_variant") is module
    broken = "VALUE = 4\nraise RuntimeError('compile failed')\n"
    for _ in range(2):  # the second call retries the import; it does not get a half module
        with pytest.raises(RuntimeError, match="compile failed"):
            _variants.load_variant(broken, "fastgex_test_variant")
    assert not [
        name for name in sys.modules if name.startswith("fastgex_test_variant_")
        and getattr(sys.modules[name], "VALUE", None) == 4
    ]  # fmt: skip
    del sys.modules[module.__name__]


def test_a_change_to_any_package_module_gives_the_variant_a_new_name(tmp_path, monkeypatch):
    # Numba's cache checks only the variant file; a formula module changed under an
    # unchanged kernel text (an upgrade) must not load code compiled from the old one.
    monkeypatch.setenv("FASTGEX_KERNEL_DIR", str(tmp_path))
    first = _variants.load_variant("VALUE = 5\n", "fastgex_test_fingerprint")
    monkeypatch.setattr(_variants, "package_fingerprint", lambda: "another package")
    second = _variants.load_variant("VALUE = 5\n", "fastgex_test_fingerprint")
    assert first.__name__ != second.__name__ and first.VALUE == second.VALUE == 5
    for module in (first, second):
        del sys.modules[module.__name__]


def test_fingerprint_changes_with_any_module_below_the_package(tmp_path):
    (tmp_path / "io").mkdir()
    (tmp_path / "_formulas.py").write_text("A = 1\n")
    (tmp_path / "io" / "reader.py").write_text("B = 2\n")
    (tmp_path / "notes.txt").write_text("not a module")
    before = _jit.sources_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("still not a module")
    assert _jit.sources_fingerprint(tmp_path) == before
    (tmp_path / "io" / "reader.py").write_text("B = 3\n")
    changed = _jit.sources_fingerprint(tmp_path)
    assert changed != before
    (tmp_path / "io" / "reader.py").rename(tmp_path / "io" / "other.py")
    assert _jit.sources_fingerprint(tmp_path) not in (before, changed)
    package = Path(_variants.__file__).resolve().parent
    assert _jit.package_fingerprint() == _jit.sources_fingerprint(package)


# --- the disk cache of the package's own kernels (fastgex._jit._fingerprint_disk_cache)

CACHE_PROBE = """
import json
from fastgex import _fastmath
_fastmath.exp_of_number(0.5)
stats = _fastmath.exp_of_number.stats
print(json.dumps({"file": _fastmath.__file__, "hits": sum(stats.cache_hits.values()),
                  "misses": sum(stats.cache_misses.values())}))
"""


def _cache_probe(package_root: Path, cache_dir: Path) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(package_root)}
    env.pop("FASTGEX_NO_CACHE", None)
    completed = subprocess.run(
        [sys.executable, "-c", CACHE_PROBE],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_a_change_to_another_package_module_invalidates_the_disk_cache(tmp_path):
    # Numba stamps a cached function with its own file only, and kernels inline other
    # modules: a copy of the package, one of whose other modules then changes.
    root = tmp_path / "site"
    package = root / "fastgex"
    shutil.copytree(
        Path(fastgex.__file__).parent, package,
        ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"),
    )  # fmt: skip
    cache = tmp_path / "cache"
    first = _cache_probe(root, cache)
    assert first["file"].startswith(str(package))
    assert (first["hits"], first["misses"]) == (0, 1)
    assert _cache_probe(root, cache)["hits"] == 1  # unchanged package: loaded from disk
    with (package / "_greeks_formulas.py").open("a", encoding="utf-8") as handle:
        handle.write("\n# an edit to a module exp_of_number is not defined in\n")
    after = _cache_probe(root, cache)
    assert (after["hits"], after["misses"]) == (0, 1)


def test_only_the_package_functions_get_the_fingerprinted_stamp(tmp_path, monkeypatch):
    assert _jit.FINGERPRINTED_CACHE
    locator = _fastmath.exp_of_number._cache._impl.locator
    assert type(locator).__name__.startswith("Fingerprinted")
    assert locator.get_source_stamp()[1] == _jit.package_fingerprint()
    (tmp_path / "user_code_for_cache_test.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef add_one(x):\n    return x + 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    user = importlib.import_module("user_code_for_cache_test")
    assert not type(user.add_one._cache._impl.locator).__name__.startswith("Fingerprinted")
    assert user.add_one(1) == 2
