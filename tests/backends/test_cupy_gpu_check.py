"""bench/gpu_check.sh --smoke: the GPU check's harness runs end to end on cupy-emulated at toy sizes.

It measures nothing (the emulator's speed means nothing); it catches a broken script before it
reaches a GPU machine, where device time is scarce.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("g++") is None or shutil.which("bash") is None,
                    reason="the smoke run needs bash and g++ (cupy-emulated)")
def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "smoke.json"
    env = dict(os.environ, SMOKE_OUT=str(out), PYTHON=sys.executable)
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--smoke"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    d = json.loads(out.read_text())
    assert d["backend"] == "cupy-emulated" and d["mode"] == "smoke"
    assert d["real_width_gpt_oss"]["ok"] is True, d["real_width_gpt_oss"]
    dec = d["decode"]
    assert "error" not in dec, dec
    assert dec["tok_per_s"] > 0 and dec["bytes_per_token"] > 0 and 0 < dec["fraction_of_measured_hbm"]
