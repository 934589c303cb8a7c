"""The command line: ``mlejax demo`` and ``mlejax fit FILE --dist NAME --column COL`` (``docs/cli.md``).

Every failure a user can cause (a missing file, a missing column, non-numeric values, an unknown family)
ends with one line on stderr and exit status 1, never a traceback; usage errors exit with 2 (argparse).
Every warning raised while the command runs (a fit that did not converge, say) becomes one line
``mlejax: warning: ...`` on stderr, never Python's two-line form with a source path, and ``--format json``
carries them as the list ``"warnings"``. Output piped into ``head`` ends quietly.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings

_EXAMPLES = """\
examples:
  mlejax demo
  mlejax fit failures.csv --dist weibull --column hours
  mlejax fit failures.csv --dist weibull --column hours --event-column failed --format json
  mlejax fit heights.parquet --dist normal --column height --format csv

families: normal, lognormal, weibull, gamma, exponential, ... (mj.families)
"""


class CLIError(Exception):
    """A problem with the user's input, reported as one line."""


def _enable_x64() -> None:
    """The command line is a process mlejax owns: float64, one CPU device per core where JAX has not
    started yet, and the persistent compilation cache (``MLEJAX_COMPILATION_CACHE=0`` turns it off)."""
    import jax

    from .engine.cache import use_compilation_cache
    from .engine.compat import backends_started
    from .engine.devices import use_cpu_devices

    jax.config.update("jax_enable_x64", True)
    if not backends_started():
        use_cpu_devices()
    use_compilation_cache()


def _demo(args) -> int:
    _enable_x64()
    import jax.numpy as jnp

    from ..datasets import ball_bearings
    from .constraints import positive
    from .fit import fit

    x = jnp.asarray(ball_bearings())

    def weibull_loglik(p, x):
        k, lam = p["shape"], p["scale"]
        z = x / lam
        return jnp.log(k) - jnp.log(lam) + (k - 1.0) * jnp.log(z) - z**k

    res = fit(weibull_loglik, {"shape": 1.0, "scale": float(jnp.mean(x))}, x, constraints=positive)
    _emit(
        res,
        args.format,
        "Weibull maximum-likelihood fit",
        "weibull",
        header=(
            "Weibull fit to the ball-bearing failure data (Lieblein & Zelen 1956; millions of revolutions, n = 23)\n"
        ),
        level=args.level,
        warned=_messages(args),
    )
    return 0 if bool(res.converged) else 1


# -- reading data ---------------------------------------------------------------------------------------


def _read_table(path: str, columns: list[str]) -> dict[str, list[str]]:
    """The named columns of a CSV (or Parquet) file, as strings (CSV) or values (Parquet)."""
    if not os.path.exists(path):
        raise CLIError(f"no such file: {path}")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a directory, not a data file")
    if path.lower().endswith((".parquet", ".pq")):
        return _read_parquet(path, columns)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text (CSV) file") from None
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None
    if not text.strip():
        raise CLIError(f"{path} is empty")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [h.strip() for h in next(reader)]
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as e:
        raise CLIError(f"{path} is not a readable CSV file: {e}") from None
    out = {}
    for col in columns:
        if col not in header:
            raise CLIError(f"column {col!r} not found in {path}; its columns are {', '.join(header)}")
        j = header.index(col)
        out[col] = [(r[j] if j < len(r) else "") for r in rows]
    return out


def _read_parquet(path, columns):
    try:
        import pandas as pd
    except ImportError:
        raise CLIError("reading Parquet files needs pandas and pyarrow: pip install pandas pyarrow") from None
    try:
        frame = pd.read_parquet(path)
    except ImportError:
        raise CLIError("reading Parquet files needs pyarrow (or fastparquet): pip install pyarrow") from None
    except Exception as e:  # the engines raise many types for a corrupt file
        raise CLIError(f"{path} is not a readable Parquet file: {str(e).splitlines()[0]}") from None
    out = {}
    for col in columns:
        if col not in frame.columns:
            raise CLIError(f"column {col!r} not found in {path}; its columns are {', '.join(map(str, frame.columns))}")
        out[col] = frame[col].tolist()
    return out


def _numbers(values, column: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise CLIError(f"column {column!r} has an empty value in data row {i + 1}")
        try:
            x = float(v.strip() if isinstance(v, str) else v)
        except (TypeError, ValueError):
            raise CLIError(f"column {column!r} has a non-numeric value {str(v)!r} in data row {i + 1}") from None
        if not math.isfinite(x):
            raise CLIError(f"column {column!r} has a non-finite value {str(v)!r} in data row {i + 1}")
        out.append(x)
    if not out:
        raise CLIError(f"column {column!r} has no values")
    return out


def _events(values, column: str) -> list[int]:
    words = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0, "1.0": 1, "0.0": 0}
    out = []
    for i, v in enumerate(values):
        key = str(v).strip().lower()
        if key not in words:
            raise CLIError(
                f"event column {column!r} must hold 1 (event observed) or 0 (censored); data row {i + 1} has {str(v)!r}"
            )
        out.append(words[key])
    return out


# -- fitting ---------------------------------------------------------------------------------------


def _family(name: str):
    from .. import families

    try:
        return families.get(name)
    except (ValueError, KeyError, TypeError) as e:
        raise CLIError(str(e).splitlines()[0] if str(e) else f"unknown family {name!r}") from None


def _fit(args) -> int:
    columns = [args.column] + ([args.event_column] if args.event_column else [])
    table = _read_table(args.file, columns)
    x = _numbers(table[args.column], args.column)
    event = _events(table[args.event_column], args.event_column) if args.event_column else None
    _enable_x64()
    import numpy as np

    import mlejax as mj

    if not hasattr(mj, "fit_dist"):
        raise CLIError("this mlejax has no fit_dist (distribution families); upgrade mlejax")
    fam = _family(args.dist)
    try:
        res = mj.fit_dist(np.asarray(x), fam, event=None if event is None else np.asarray(event))
    except (ValueError, TypeError) as e:
        raise CLIError(str(e).splitlines()[0]) from None
    name = getattr(fam, "name", args.dist)
    title = f"{name} fit to {args.column} ({os.path.basename(args.file)})"
    _emit(res, args.format, title, name, level=args.level, warned=_messages(args))
    return 0 if bool(res.converged) else 1


# -- output --------------------------------------------------------------------------------------------


def result_record(res, family: str | None = None, level: float = 0.95) -> dict:
    """The machine-readable form of a fit (``--format json``): estimates, standard errors and Wald
    intervals per parameter, with the fit's facts."""
    import numpy as np

    from .status import Status

    est = np.asarray(res.estimates, dtype=float)
    se = np.asarray(res.bse, dtype=float)
    ci = np.asarray(res.confint(level), dtype=float)
    order = res.param_order if res.param_order is not None else range(len(res.param_names))

    def num(v):
        v = float(v)
        return v if math.isfinite(v) else None

    params = {
        res.param_names[i]: {"estimate": num(est[i]), "se": num(se[i]), "lower": num(ci[i, 0]), "upper": num(ci[i, 1])}
        for i in order
    }
    out = {
        "family": family,
        "params": params,
        "level": float(level),
        "loglik": num(res.loglik),
        "aic": num(res.aic),
        "bic": num(res.bic),
        "nobs": num(res.nobs),
        "converged": bool(res.converged),
        "status": Status(int(res.status)).name,
        "n_iter": int(res.n_iter),
    }
    if family is None:
        del out["family"]
    return out


def _emit(res, fmt: str, title: str, family: str | None, header: str = "", level: float = 0.95, warned=()) -> None:
    if fmt == "text":
        if header:
            print(header)
        print(res.summary(level=level, title=title))
        return
    rec = result_record(res, family, level)
    if fmt == "json":
        rec["warnings"] = list(warned)
        print(json.dumps(rec, indent=2))
        return
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["parameter", "estimate", "se", "lower", "upper"])
    for name, row in rec["params"].items():
        w.writerow([name] + ["nan" if row[k] is None else repr(row[k]) for k in ("estimate", "se", "lower", "upper")])


# -- entry point ----------------------------------------------------------------------------------------


def _level(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"the level must lie strictly between 0 and 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mlejax`` (also used to document the command line)."""
    parser = argparse.ArgumentParser(
        prog="mlejax",
        description="Maximum-likelihood estimation on JAX: fit distributions to data from the command line.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="output: the summary table (text, default), JSON, or one CSV row per parameter",
    )
    common.add_argument("--level", type=_level, default=0.95, help="confidence level of the intervals (0.95)")
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="fit a Weibull distribution to data shipped with mlejax",
        description="Fit a Weibull distribution to the ball-bearing failure data "
        "(Lieblein & Zelen 1956) that ship with mlejax, and print the summary.",
    )
    demo.set_defaults(func=_demo)
    fitp = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a distribution family to a column of a CSV or Parquet file",
        description="Fit a distribution family by maximum likelihood to one column of a CSV file (Parquet "
        "with pandas and pyarrow installed); right-censored data with --event-column.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fitp.add_argument("file", metavar="FILE", help="CSV file with a header row (or .parquet)")
    fitp.add_argument("--dist", required=True, metavar="NAME", help="family name: normal, weibull, gamma, ...")
    fitp.add_argument("--column", required=True, metavar="COL", help="the column holding the observations")
    fitp.add_argument(
        "--event-column",
        metavar="COL",
        help="1 where the value is an observed event, 0 where it is a right-censoring time",
    )
    fitp.set_defaults(func=_fit)
    return parser


# -- warnings -------------------------------------------------------------------------------------------


def _messages(args) -> list[str]:
    """The warnings raised so far, one line each (the first line of each message), without repeats."""
    out: list[str] = []
    for w in getattr(args, "caught", None) or ():
        text = str(w.message).strip().splitlines()
        line = text[0] if text else w.category.__name__
        if line not in out:
            out.append(line)
    return out


def _report_warnings(args) -> None:
    """Each warning not yet reported as one line ``mlejax: warning: ...`` on stderr."""
    done = getattr(args, "reported", 0)
    lines = _messages(args)
    for line in lines[done:]:
        print(f"mlejax: warning: {line}", file=sys.stderr)
    args.reported = len(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0: converged fit)."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every warning is recorded (and reported once, as one line)
        args.caught = caught
        try:
            return _main(args)
        finally:
            _report_warnings(args)


def _main(args) -> int:
    try:
        status = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not at interpreter exit
        return status
    except CLIError as e:
        _report_warnings(args)
        print(f"mlejax: error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader (e.g. `head`) closed the pipe: end quietly (Python's documented recipe: point
        # stdout at devnull so the interpreter's final flush does not fail again).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        print("mlejax: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not the user's fault: still one line
        _report_warnings(args)
        first = str(e).splitlines()[0] if str(e) else ""
        print(f"mlejax: error: {type(e).__name__}: {first}", file=sys.stderr)
        return 1
