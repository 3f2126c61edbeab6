"""Kernel variants (fastgex._variants): switch rewriting and a failed import's cleanup."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fastgex import _variants


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
    before = _variants.sources_fingerprint(tmp_path)
    (tmp_path / "notes.txt").write_text("still not a module")
    assert _variants.sources_fingerprint(tmp_path) == before
    (tmp_path / "io" / "reader.py").write_text("B = 3\n")
    changed = _variants.sources_fingerprint(tmp_path)
    assert changed != before
    (tmp_path / "io" / "reader.py").rename(tmp_path / "io" / "other.py")
    assert _variants.sources_fingerprint(tmp_path) not in (before, changed)
    package = Path(_variants.__file__).resolve().parent
    assert _variants.package_fingerprint() == _variants.sources_fingerprint(package)
