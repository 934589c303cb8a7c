"""The demo command and the shipped dataset."""

import subprocess
import sys

import numpy as np
import scipy.stats

from mlejax.__main__ import main
from mlejax.datasets import ball_bearings


def test_ball_bearings_dataset():
    x = ball_bearings()
    assert x.shape == (23,)
    np.testing.assert_allclose(x.sum(), 1661.16, rtol=1e-12)


def test_demo_prints_summary_matching_scipy(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    shape, _, scale = scipy.stats.weibull_min.fit(ball_bearings(), floc=0)
    assert "Weibull maximum-likelihood fit" in out
    assert "converged: yes" in out
    row = {
        line.split()[0]: [float(v) for v in line.split()[1:3]]
        for line in out.splitlines()
        if line.startswith(("shape", "scale"))
    }
    np.testing.assert_allclose(row["shape"][0], shape, rtol=1e-5)  # printed to 6 significant digits
    np.testing.assert_allclose(row["scale"][0], scale, rtol=1e-5)


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "mlejax", "demo"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "shape" in proc.stdout and "scale" in proc.stdout
