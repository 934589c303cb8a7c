"""Display: the summary as an HTML table, readable reprs of single and batched results, named intervals."""

import html.parser
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import NORMAL_CONS, NORMAL_INIT, fit_normal, normal

import mlejax as mj

X = jnp.array([0.3, 1.9, 1.1, 2.4, 0.8, 1.7, 2.2, 0.1])


class _Cells(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self._row, self._in = [], None, False
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._in = True
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self.rows.append(self._row)
        elif tag in ("td", "th"):
            self._in = False

    def handle_data(self, data):
        if self._in:
            self._row[-1] += data


@pytest.fixture(scope="module")
def res():
    return fit_normal(X)


def test_summary_html_is_a_table_with_the_numbers(res):
    page = res.summary()._repr_html_()
    p = _Cells()
    p.feed(page)
    assert p.tags[0] == "table" and "caption" in p.tags
    header = next(r for r in p.rows if r and r[0] == "parameter")
    assert header[1:] == ["estimate", "std err", "z", "P>|z|", "[0.025", "0.975]"]
    rows = {r[0]: r[1:] for r in p.rows if r and r[0] in ("mu", "sigma")}
    # closed forms: mean and sigma_hat / sqrt(n)
    np.testing.assert_allclose(float(rows["mu"][0]), float(X.mean()), rtol=1e-6)
    np.testing.assert_allclose(float(rows["mu"][1]), float(X.std() / np.sqrt(8)), rtol=1e-5)
    facts = {r[0]: r[1] for r in p.rows if len(r) >= 2 and r[0] in ("log-likelihood", "observations")}
    assert facts["observations"] == "8"
    # FitResult renders as its summary in notebooks
    assert res._repr_html_() == page


def test_html_escapes_and_shows_warnings():
    bad = mj.fit(lambda p, x: -0.5 * (x - p["a"] - p["b"]) ** 2, {"a": 0.0, "b": 0.0}, X)
    page = bad.summary(title="a <b> & c")._repr_html_()
    assert "a &lt;b&gt; &amp; c" in page
    assert "<b>Warning:</b>" in page and "not positive definite" in page


def test_repr_of_single_fit(res):
    text = repr(res)
    lines = text.splitlines()
    assert lines[0].startswith("FitResult(converged=True, status=success, loglik=")
    assert "nobs=8" in lines[0] and "method='newton'" in lines[0]
    mu = float(res.params["mu"])
    assert lines[1].split() == ["mu", "=", f"{mu:.6g}", "±", f"{float(res.se['mu']):.3g}"]
    assert lines[2].split()[0] == "sigma"


def test_repr_of_batched_fit_and_under_jit():
    data = jnp.stack([X, 2.0 * X, X + 1.0])
    batch = jax.vmap(lambda d: mj.fit(normal, NORMAL_INIT, d, constraints=NORMAL_CONS))(data)
    text = repr(batch)
    assert text.startswith("FitResult(batch_shape=(3,), converged 3/3, statuses {'success': 3}")
    mu_line = next(line for line in text.splitlines() if line.strip().startswith("mu"))
    means = np.asarray(data.mean(axis=1))
    assert f"mean {means.mean():.6g}" in mu_line and f"[{means.min():.6g}, {means.max():.6g}]" in mu_line
    assert "<pre>" in batch._repr_html_()

    seen = []

    @jax.jit
    def f(d):
        r = mj.fit(normal, NORMAL_INIT, d, constraints=NORMAL_CONS)
        seen.append(repr(r))
        return r.params["mu"]

    f(X)
    assert seen[0].startswith("FitResult(<traced>")


def test_confint_table_names_the_intervals(res):
    pd = pytest.importorskip("pandas")
    table = res.confint_table()
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["mu", "sigma"] and list(table.columns) == ["lower", "upper"]
    np.testing.assert_allclose(table.to_numpy(), np.asarray(res.confint()), rtol=1e-12)
    prof = res.confint_table(kind="profile", level=0.9)
    np.testing.assert_allclose(prof.loc["mu"].to_numpy(), res.profile_ci("mu", 0.9), rtol=1e-10)
    with pytest.raises(ValueError, match="kind must be"):
        res.confint_table(kind="bootstrap")
    # confint stays the (k, 2) array that works under jit
    assert res.confint().shape == (2, 2)


def test_import_does_not_load_matplotlib():
    code = "import sys, mlejax; print('matplotlib' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() == "False", proc.stderr
