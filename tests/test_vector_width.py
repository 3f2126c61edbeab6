"""The JIT policy's vector-width choice (``fastgex._jit.VECTOR_WIDTH``), in fresh processes.

Numba fixes its CPU features when its CPU target is first set up, so each case runs in
its own interpreter. Nothing is compiled: only the decision is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from numba.core import codegen

PROBE = """
import json, sys
{before}
import numba
import fastgex._jit as jit
print(json.dumps({{"decision": jit.VECTOR_WIDTH, "features": numba.config.CPU_FEATURES}}))
"""

HOST_HAS_AVX512 = "+avx512f" in codegen.get_host_cpu_features().split(",")


def _probe(env_changes: dict[str, str | None], before: str = "") -> dict:
    owned = ("FASTGEX_VECTOR_WIDTH", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")
    env = {key: value for key, value in os.environ.items() if key not in owned}
    env.update({key: value for key, value in env_changes.items() if value is not None})
    completed = subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        return {"error": completed.stderr}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_default_uses_full_width_on_avx512_only():
    result = _probe({})
    if HOST_HAS_AVX512:
        assert result["decision"] == "512-bit vectors"
        assert result["features"].split(",")[-1] == "-prefer-256-bit"
        # Every host feature is kept: only the tuning flag is added.
        assert result["features"].startswith(codegen.get_host_cpu_features())
    else:
        assert result["decision"] == "native (no AVX-512)"
        assert result["features"] is None


def test_opt_out_and_user_choices_are_left_alone():
    assert _probe({"FASTGEX_VECTOR_WIDTH": "native"})["decision"].startswith("native (")
    assert _probe({"FASTGEX_VECTOR_WIDTH": "native"})["features"] is None
    generic = _probe({"NUMBA_CPU_NAME": "generic"})
    assert generic["decision"] == "native (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES set)"
    assert generic["features"] == ""  # Numba's own value for a generic CPU, untouched


def test_numba_target_set_up_first_is_reported():
    before = "import numba\n@numba.njit\ndef plus_one(x):\n    return x + 1\n"
    result = _probe({}, before=before)
    assert result["decision"].startswith("native (Numba's CPU target was set up")
    assert result["features"] is None


def test_unknown_setting_is_a_clear_error():
    result = _probe({"FASTGEX_VECTOR_WIDTH": "1024"})
    assert "FASTGEX_VECTOR_WIDTH must be '512' or 'native'" in result["error"]
