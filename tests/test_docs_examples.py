"""The Python examples in docs/ run as written (file names point at the real chains)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import CHAINS_DIR

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
FILES = {
    '"spx_quotedata.csv"': CHAINS_DIR / "phammings_spx_quotedata_2024-01-07.csv",
    '"phammings_spx_quotedata_2024-01-07.csv"': CHAINS_DIR
    / "phammings_spx_quotedata_2024-01-07.csv",
}


def _blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", ["quickstart.md", "methodology.md", "greeks.md"])
def test_examples_run(page):
    namespace: dict = {}
    exec("import fastgex", namespace)
    for block in _blocks(page):
        for name, path in FILES.items():
            if name in block:
                if not CHAINS_DIR.is_dir():
                    pytest.skip(f"real chains not found at {CHAINS_DIR}")
                block = block.replace(name, repr(str(path)))
        exec(compile(block, f"{page} example", "exec"), namespace)


def test_published_figure_in_methodology_example(chains_dir):
    (block,) = [b for b in _blocks("methodology.md") if "phammings" in b]
    namespace: dict = {}
    exec("import fastgex", namespace)
    code = block.replace(
        '"phammings_spx_quotedata_2024-01-07.csv"',
        repr(str(chains_dir / "phammings_spx_quotedata_2024-01-07.csv")),
    )
    *statements, last = code.strip().splitlines()
    exec("\n".join(statements), namespace)
    value = eval(last.split("#")[0], namespace)
    assert round(value, 2) == -11.00


def test_osi_example_in_schema_page():
    (block,) = [b for b in _blocks("schema.md") if "parse_osi" in b]
    namespace: dict = {}
    exec(compile(block, "schema.md example", "exec"), namespace)
    chain = namespace["chain"]
    assert chain.column("underlying").to_pylist() == ["SPXW", "SPXW"]
    assert chain.column("strike").to_pylist() == [4700.0, 4600.0]
    assert chain.column("option_type").to_pylist() == ["C", "P"]


def test_plots_page_example(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is needed")
    (block,) = [b for b in _blocks("plots.md") if "plot.save" in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "plots.md example", "exec"), {})
    for name in ("strikes.png", "profile.png"):
        assert (tmp_path / name).stat().st_size > 20_000


def _table_numbers(page: str) -> list[float]:
    """The last column of every markdown table row of ``page`` that ends in a number."""
    numbers = []
    for line in (DOCS / page).read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"-?\d+(\.\d+)?", cells[-1]):
            numbers.append(float(cells[-1]))
    return numbers


def test_comparison_page_numbers_are_what_the_code_computes(chains_dir):
    """The worked example runs, its tables show its own results, and the published
    figures (-11.00 $bn total, zero gamma 4,734) come out of the published settings."""
    (block,) = [b for b in _blocks("comparison.md") if "totals" in b]
    namespace: dict = {}
    code = block.replace(
        '"phammings_spx_quotedata_2024-01-07.csv"',
        repr(str(chains_dir / "phammings_spx_quotedata_2024-01-07.csv")),
    )
    exec(compile(code, "comparison.md example", "exec"), namespace)
    computed = [*namespace["totals"].values(), *namespace["points"].values()]
    assert _table_numbers("comparison.md") == computed
    assert namespace["totals"]["published settings"] == -11.00  # the published figure
    assert abs(namespace["points"]["zero_gamma_grid"] - 4734) <= 3  # the published flip
