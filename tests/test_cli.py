"""The command line (demo, fit) and the shipped dataset; CLI outputs checked against ``fit_dist``."""

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

import mlejax as mj
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


# -- mlejax fit FILE --dist NAME --column COL ------------------------------------------------------------

needs_fit_dist = pytest.mark.skipif(not hasattr(mj, "fit_dist"), reason="mj.fit_dist has not landed")


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--dist NAME" in out and "--event-column" in out and "examples:" in out
    assert "mlejax fit failures.csv --dist weibull --column hours" in out


@pytest.mark.parametrize(
    "text, argv_tail, message",
    [
        (None, ["--dist", "normal", "--column", "x"], "no such file"),
        ("x,y\n1,2\n3,4\n", ["--dist", "normal", "--column", "z"], "column 'z' not found"),
        ("x,y\n1,2\nabc,4\n", ["--dist", "normal", "--column", "x"], "non-numeric value 'abc' in data row 2"),
        ("x,y\n1,2\n,4\n", ["--dist", "normal", "--column", "x"], "empty value in data row 2"),
        ("", ["--dist", "normal", "--column", "x"], "is empty"),
        ("x,e\n1,1\n2,maybe\n", ["--dist", "weibull", "--column", "x", "--event-column", "e"], "event column 'e'"),
    ],
)
def test_bad_input_is_one_line_on_stderr(tmp_path, capsys, text, argv_tail, message):
    path = str(tmp_path / "missing.csv") if text is None else _csv(tmp_path, text)
    rc, out, err = _run(capsys, ["fit", path] + argv_tail)
    assert rc == 1 and out == ""
    assert err.startswith("mlejax: error: ") and err.count("\n") == 1 and message in err
    assert "Traceback" not in err


def test_binary_file_and_unknown_family_are_one_line(tmp_path, capsys):
    binary = tmp_path / "data.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    rc, _, err = _run(capsys, ["fit", str(binary), "--dist", "normal", "--column", "x"])
    assert rc == 1 and err.count("\n") == 1 and err.startswith("mlejax: error: ")
    path = _csv(tmp_path, "x\n1.0\n2.0\n3.5\n", "ok.csv")
    rc, _, err = _run(capsys, ["fit", path, "--dist", "no-such-family", "--column", "x"])
    assert rc == 1 and err.count("\n") == 1 and err.startswith("mlejax: error: ")
    assert "no-such-family" in err or "fit_dist" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "data.csv", "--column", "x"])  # --dist missing
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--level", "1.5"])
    assert exc.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err


def test_parquet_needs_pyarrow_or_reads(tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "d.parquet"
    try:
        pd.DataFrame({"x": [1.0, 2.0, 4.0]}).to_parquet(path)
    except ImportError:
        path.write_bytes(b"PAR1 not really")
        rc, _, err = _run(capsys, ["fit", str(path), "--dist", "normal", "--column", "x"])
        assert rc == 1 and err.count("\n") == 1 and ("pyarrow" in err or "Parquet" in err)
        return
    if not hasattr(mj, "fit_dist"):
        pytest.skip("mj.fit_dist has not landed")
    rc, out, _ = _run(capsys, ["fit", str(path), "--dist", "normal", "--column", "x", "--format", "json"])
    assert rc == 0
    np.testing.assert_allclose(json.loads(out)["params"]["loc"]["estimate"], 7.0 / 3.0, rtol=1e-9)


@needs_fit_dist
def test_fit_csv_matches_fit_dist(tmp_path, capsys):
    x = ball_bearings()
    rows = "\n".join(f"{float(v)!r},{i}" for i, v in enumerate(x))
    path = _csv(tmp_path, "hours,id\n" + rows + "\n")
    ref = mj.fit_dist(np.asarray(x), "weibull")
    rc, out, _ = _run(capsys, ["fit", path, "--dist", "weibull", "--column", "hours", "--format", "json"])
    assert rc == 0
    rec = json.loads(out)
    assert rec["converged"] and rec["status"] == "success" and rec["nobs"] == 23
    for i, name in enumerate(ref.param_names):
        np.testing.assert_allclose(rec["params"][name]["estimate"], float(ref.estimates[i]), rtol=1e-12)
        np.testing.assert_allclose(rec["params"][name]["se"], float(ref.bse[i]), rtol=1e-12)
        np.testing.assert_allclose(
            [rec["params"][name]["lower"], rec["params"][name]["upper"]], np.asarray(ref.confint())[i], rtol=1e-12
        )
    np.testing.assert_allclose(rec["loglik"], float(ref.loglik), rtol=1e-12)
    # the same fit as scipy's (Weibull with the location at 0)
    shape, _, scale = scipy.stats.weibull_min.fit(x, floc=0)
    np.testing.assert_allclose(rec["params"]["shape"]["estimate"], shape, rtol=1e-5)
    np.testing.assert_allclose(rec["params"]["scale"]["estimate"], scale, rtol=1e-5)

    rc, out, _ = _run(capsys, ["fit", path, "--dist", "weibull", "--column", "hours", "--format", "csv"])
    table = list(csv.reader(io.StringIO(out)))
    assert table[0] == ["parameter", "estimate", "se", "lower", "upper"]
    got = {r[0]: [float(v) for v in r[1:]] for r in table[1:]}
    np.testing.assert_allclose(got["shape"][:2], [rec["params"]["shape"]["estimate"], rec["params"]["shape"]["se"]])

    rc, out, _ = _run(capsys, ["fit", path, "--dist", "weibull", "--column", "hours"])
    assert rc == 0 and "converged: yes" in out and "weibull" in out.lower()


@needs_fit_dist
def test_fit_with_event_column_matches_fit_dist(tmp_path, capsys):
    t = [3.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0]
    event = [1, 1, 0, 1, 0, 1, 1]
    path = _csv(tmp_path, "t;failed\n" + "\n".join(f"{a};{b}" for a, b in zip(t, event)) + "\n")  # ; sniffed
    rc, out, _ = _run(
        capsys, ["fit", path, "--dist", "exponential", "--column", "t", "--event-column", "failed", "--format", "json"]
    )
    assert rc == 0
    rec = json.loads(out)
    # closed form (also fit_dist's doctest): total time / number of events, SE scale / sqrt(events)
    np.testing.assert_allclose(rec["params"]["scale"]["estimate"], 59.0 / 5.0, rtol=1e-9)
    np.testing.assert_allclose(rec["params"]["scale"]["se"], 59.0 / 5.0 / np.sqrt(5.0), rtol=1e-6)


def test_demo_piped_into_head_ends_quietly():
    proc = subprocess.run(
        f"'{sys.executable}' -m mlejax demo | head -n 1", shell=True, capture_output=True, text=True, timeout=300
    )
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.stdout.startswith("Weibull fit")
    # a pipe closed before anything is read
    proc = subprocess.run(
        f"'{sys.executable}' -m mlejax demo --format json | true", shell=True, capture_output=True, text=True
    )
    assert "Traceback" not in proc.stderr, proc.stderr


@needs_fit_dist
@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_warnings_are_one_line_each_on_stderr(tmp_path, capsys, fmt):
    # every time censored: the likelihood grows without bound, the fit does not converge and warns
    path = _csv(tmp_path, "t,e\n1,0\n2,0\n3,0\n")
    argv = ["fit", path, "--dist", "weibull", "--column", "t", "--event-column", "e", "--format", fmt]
    rc, out, err = _run(capsys, argv)
    assert rc == 1
    lines = err.splitlines()
    assert lines and all(line.startswith("mlejax: warning: ") for line in lines), err
    assert any("did not converge" in line for line in lines)
    assert len(set(lines)) == len(lines)
    if fmt == "json":
        rec = json.loads(out)
        assert rec["warnings"] == [line.removeprefix("mlejax: warning: ") for line in lines]
        assert rec["converged"] is False


@needs_fit_dist
def test_json_of_a_clean_fit_has_an_empty_warning_list(tmp_path, capsys):
    path = _csv(tmp_path, "x\n1.0\n2.0\n3.5\n4.0\n")
    rc, out, err = _run(capsys, ["fit", path, "--dist", "normal", "--column", "x", "--format", "json"])
    assert rc == 0 and err == ""
    assert json.loads(out)["warnings"] == []


@needs_fit_dist
def test_warning_in_a_real_process_has_no_source_path(tmp_path):
    path = _csv(tmp_path, "t,e\n1,0\n2,0\n3,0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mlejax", "fit", path, "--dist", "weibull", "--column", "t", "--event-column", "e"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("mlejax: warning: ") for line in lines), proc.stderr
    assert ".py:" not in proc.stderr and "warn(" not in proc.stderr
