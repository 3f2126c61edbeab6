"""Sessions: tests (with the CUDA simulator run), lint, docs (default); cuda_sim, bench,
bench_cuda, capi, spark, boundscheck, fuzz (on demand)."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole test suite, then the CUDA kernels under Numba's CUDA simulator.

    Real-chain tests skip when ../shared/data is absent. The simulator run is its own
    process (the simulator must be on before numba is imported) in the same virtualenv,
    so the CPU kernels it compares against are already compiled and cached.
    """
    session.install(".[test]")
    # Compiling kernels is single-threaded and most of the suite's time: one worker per
    # core (pytest-xdist), each test file whole on one worker so its compiled kernels and
    # module fixtures are reused. FASTGEX_TEST_WORKERS=0 runs in this process only.
    workers = os.environ.get("FASTGEX_TEST_WORKERS", "auto")
    # The slowest tests are listed so CI's time budget (well under 20 min) stays visible.
    session.run(
        "pytest", "-q", "--durations=20", "-n", workers, "--dist", "loadfile", *session.posargs
    )
    if not session.posargs:
        _cuda_simulator_tests(session)


def _cuda_simulator_tests(session: nox.Session, *args: str) -> None:
    session.run("pytest", "-q", "tests/test_cuda_sim.py", *args, env={"NUMBA_ENABLE_CUDASIM": "1"})


@nox.session
def cuda_sim(session: nox.Session) -> None:
    """The CUDA kernels under Numba's CUDA simulator, compared with the CPU kernels.

    Its own process: the simulator must be on before numba is imported.
    """
    session.install(".[test]")
    _cuda_simulator_tests(session, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff>=0.5")
    session.run(
        "ruff", "check", "src", "tests", "benchmarks", "noxfile.py", "docs/conf.py",
        "docs/make_figures.py",
    )  # fmt: skip
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def docs(session: nox.Session) -> None:
    """Sphinx (MyST) site, nitpicky, warnings as errors."""
    session.install(".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-b", "html", "docs", "docs/_build/html"
    )


@nox.session
def boundscheck(session: nox.Session) -> None:
    """The kernel tests with Numba's bounds checking on (slow: every kernel compiles anew).

    An out-of-range index in any kernel raises IndexError instead of reading past an
    array. Not a default session; run it after changing a kernel.
    """
    import tempfile

    session.install(".[test]")
    with tempfile.TemporaryDirectory() as cache:
        session.run(
            "pytest", "-q", "-x", "tests/test_gex.py", "tests/test_groups.py",
            "tests/test_bad_input.py", "tests/test_levels.py", "tests/test_greeks.py",
            "tests/test_implied_vol.py", *session.posargs,
            env={"NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": cache, "FASTGEX_NO_CACHE": "1"},
        )  # fmt: skip


@nox.session
def capi(session: nox.Session) -> None:
    """Build libfastgex from the installed package and run the C ABI tests (also in tests)."""
    session.install(".[test]")
    session.run("pytest", "-q", "tests/test_capi.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (pytest-benchmark); ratios are printed and saved under .benchmarks/."""
    session.install(".[bench]")
    session.run(
        "pytest",
        "benchmarks",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-columns=min,median,mean,rounds",
        "-p",
        "no:cacheprovider",
        *session.posargs,
    )


@nox.session
def bench_cuda(session: nox.Session) -> None:
    """GPU benchmarks (benchmarks/test_bench_cuda.py; skipped without a CUDA GPU)."""
    session.install(".[bench,cuda]")
    session.run(
        "pytest",
        "benchmarks/test_bench_cuda.py",
        "--benchmark-only",
        "--benchmark-autosave",
        "--benchmark-columns=min,median,mean,rounds",
        "-p",
        "no:cacheprovider",
        "-rs",
        *session.posargs,
    )


@nox.session
def spark(session: nox.Session) -> None:
    """The Spark recipe of docs/scaling.md (applyInArrow) on local[2] Spark; needs Java 17+.

    On demand only: pyspark is about 400 MB and the JVM start takes about a minute here.
    """
    session.install(".[test]", "pyspark>=4.0", "pandas<3")
    session.run(
        "pytest", "-q", "-rs", "tests/test_batch.py", "-k", "spark or partition_function",
        *session.posargs,
    )  # fmt: skip


@nox.session
def fuzz(session: nox.Session) -> None:
    """The fuzz campaigns of docs/reliability.md: hypothesis big, then each atheris harness.

    ``FASTGEX_FUZZ_EXAMPLES`` (default 2000) examples per hypothesis test in
    tests/test_fuzz.py; ``FASTGEX_FUZZ_SECONDS`` (default 120) seconds per atheris harness
    (crash reproducers land in .fuzz/). Not a default session.
    """
    import os

    session.install(".[test]", "atheris")
    examples = os.environ.get("FASTGEX_FUZZ_EXAMPLES", "2000")
    seconds = os.environ.get("FASTGEX_FUZZ_SECONDS", "120")
    session.run(
        "pytest", "-q", "tests/test_fuzz.py", *session.posargs,
        env={"FASTGEX_FUZZ_EXAMPLES": examples},
    )  # fmt: skip
    os.makedirs(".fuzz", exist_ok=True)
    for harness in ("fuzz_osi", "fuzz_cboe", "fuzz_read_chain"):
        session.run(
            "python", f"tests/fuzz/{harness}.py", f"-max_total_time={seconds}", "-timeout=30",
            "-artifact_prefix=.fuzz/",
        )  # fmt: skip
