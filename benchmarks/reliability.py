"""Reliability (issue 17): the fuzz corpus, the leakage properties and the kill cases, as one table in RESULTS.md.

- Fuzz: every kind of tests/fuzz/corpus.py for each seed, through the command line in-process, judged by
  tests/fuzz/check.py: a **crash** is an exception (a traceback), a traceback in the output or an exit code other
  than 0 and 2; a **silent loss** is an exit 0 whose row account does not hold (rows in ≠ used + quarantined, or
  ≠ the file's records counted by Python's csv module or Parquet's metadata, or a quarantine file that does not
  hold the quarantined rows); an **unclear error** is an exit 2 without exactly one ``error:`` line (or Click's
  box naming the option), or with a message under 30 characters, or in a library's words ("Invalid Input
  Error", "not supported between instances"…), or that names none of the case's files, columns, options or
  config keys, or not what the case is about (e.g. "encoding" for a Latin-1 file).
- Leakage: the prepare-level property (tests/validate/test_future_rows_property.py) with more hypothesis
  examples, derandomised; and the predict-level cases (tests/e2e/test_leakage_predict.py).
- Kills: tests/e2e/test_kill.py's seeded SIGKILL/SIGTERM moments on a tiny shop.

Usage: ``.venv/bin/python benchmarks/reliability.py --out benchmarks/RESULTS.md``
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from harness import machine_description, write_section  # noqa: E402  (benchmarks/)

HEADING = "## Reliability (issue 17)"


def fuzz(seeds: list[int], whole_runs: int) -> list:
    from tests.fuzz.check import run_case
    from tests.fuzz.corpus import MODEL_KINDS, VALIDATE_KINDS, WHOLE_RUN_KINDS, cases

    outcomes = []
    corpus = [c for s in seeds for c in [*cases(VALIDATE_KINDS, s), *cases(MODEL_KINDS, s, per_kind=2)]]
    corpus += [c for s in range(whole_runs) for c in cases(WHOLE_RUN_KINDS, s)]
    for i, case in enumerate(corpus, 1):
        outcome = run_case(case)
        outcomes.append(outcome)
        if not outcome.ok:
            print(f"[{i}/{len(corpus)}] {outcome.problem()}", flush=True)
    return outcomes


def leakage_prepare(examples: int) -> tuple[int, int, str]:
    """Hypothesis examples tried and failed (0 or 1: hypothesis stops at the first failure, shrunk)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from tests.validate.test_future_rows_property import later_line, later_row, past_lines, prepared_outputs

    tried = 0
    with tempfile.TemporaryDirectory() as folder:
        past = prepared_outputs(past_lines(), Path(folder))

    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(rows=st.lists(later_row, min_size=1, max_size=60), at_top=st.booleans())
    def later_rows_change_nothing(rows: list, at_top: bool) -> None:
        nonlocal tried
        tried += 1
        later = [later_line(r) for r in rows]
        with tempfile.TemporaryDirectory() as folder:
            got = prepared_outputs(later + past_lines() if at_top else past_lines() + later, Path(folder))
        assert got.keys() == past.keys()
        for name, table in past.items():
            assert got[name] == table if isinstance(table, str) else got[name].equals(table), name

    try:
        later_rows_change_nothing()
    except Exception as e:  # a failed property, shrunk by hypothesis
        return tried, 1, f"{type(e).__name__}: {str(e)[:300]}"
    return tried, 0, ""


def leakage_predict(seeds: list[int]) -> tuple[int, int, list[str]]:
    from tests.e2e.test_leakage_predict import differences, later_lines, past_lines, predictions

    failed = []
    with tempfile.TemporaryDirectory() as folder:
        past = predictions(past_lines(), Path(folder) / "past")
        for seed in seeds:
            at_top = seed % 2 == 1
            later = later_lines(seed)
            lines = later + past_lines() if at_top else past_lines() + later
            found = differences(past, predictions(lines, Path(folder) / f"later-{seed}"))
            if found:
                failed.append(f"seed {seed} ({'first' if at_top else 'appended'}): {found}")
    return len(seeds), len(failed), failed


def kills(seed: int, n: int) -> tuple[list[dict], list[str]]:
    from tests.e2e.test_kill import kill_moments, stop_at
    from tests.e2e.test_predict import TINY_TOML, _shop_rows

    seen, failed = [], []
    with tempfile.TemporaryDirectory() as folder:
        shop = Path(folder) / "shop.csv", Path(folder) / "tiny.toml"
        shop[1].write_text(TINY_TOML)
        _shop_rows().to_csv(shop[0], index=False)
        out, tmp = Path(folder) / "out" / "run", Path(folder) / "tmp"
        tmp.mkdir()
        for how, delay in kill_moments(seed, n):
            try:
                seen.append(stop_at(shop, out, tmp, how, delay))
            except Exception:  # an assertion of the kill test
                failed.append(f"{how.name} after {delay} s: {traceback.format_exc(limit=2)[-600:]}")
                seen.append({"signal": how.name, "delay": delay, "stage": "failed", "finished": False, "out": None})
    return seen, failed


def section(args: argparse.Namespace, fuzzed: list, prep: tuple, pred: tuple, killed: tuple, minutes: float) -> str:
    crashes = [o for o in fuzzed if o.crash]
    losses = [o for o in fuzzed if o.silent_loss]
    unclear = [o for o in fuzzed if o.unclear]
    exits = {code: sum(o.exit_code == code for o in fuzzed) for code in sorted({o.exit_code for o in fuzzed})}
    seen, kill_failures = killed
    command = ".venv/bin/python benchmarks/reliability.py " + shlex.join(sys.argv[1:])
    lines = [
        HEADING,
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; the whole run took {minutes:.1f} min  ",
        f"Machine: {machine_description(('duckdb', 'pyarrow', 'torch', 'hypothesis'))}",
        "",
        "Inputs: the generated corpus of tests/fuzz/corpus.py (no blobs: files, configs and options built from a "
        f"seed), {len({o.case.kind for o in fuzzed})} kinds × seeds {args.seeds[0]}–{args.seeds[-1]} "
        "(two variants of the predict and prepare option kinds per seed), plus "
        f"{args.whole_runs} whole `predict` run(s) on a spoiled shop; each through the command line in-process "
        "(`custseq validate`, `prepare` or `predict`). What counts as a crash, a silent loss and an unclear error: "
        "see the docstring of benchmarks/reliability.py (tests/fuzz/check.py). Leakage: rows after the as-of date "
        "appended or put first with new types, formats, categories and ids; prepare's outputs compared byte for "
        "byte, predict's predictions to 1e-9 with seed 0. Kills: a tiny-shop `predict` stopped with SIGKILL or "
        "SIGTERM at a seeded moment up to 10 s into its work; its `--out` must be absent or whole (run.json, every "
        "file readable, predictions.csv = .parquet = metrics), nothing left beside it or in the temporary folder "
        "once the next run starts.",
        "",
        "| check | cases | failures | goal |",
        "|---|---:|---:|---:|",
        f"| inputs tried (fuzz; exit codes {', '.join(f'{k}: {v}' for k, v in exits.items())}) | {len(fuzzed)} | "
        f"{len(crashes) + len(losses) + len(unclear)} | 0 |",
        f"| crashes (tracebacks, exit 1) | {len(fuzzed)} | {len(crashes)} | 0 |",
        f"| silent losses (exit 0, rows unaccounted) | {exits.get(0, 0)} | {len(losses)} | 0 |",
        f"| unclear errors (exit 2) | {exits.get(2, 0)} | {len(unclear)} | 0 |",
        f"| leakage property cases: prepare (hypothesis examples) | {prep[0]} | {prep[1]} | 0 |",
        f"| leakage property cases: predict (fixed seed) | {pred[0]} | {pred[1]} | 0 |",
        f"| kill cases (SIGKILL/SIGTERM; output absent or whole; {sum(not s['finished'] for s in seen)} stopped "
        f"mid-run) | {len(seen)} | {len(kill_failures)} | 0 |",
        "",
        "Kill moments: "
        + "; ".join(
            f"{s['signal']} at {s['delay']} s ({s['stage']}{', had finished' if s['finished'] else ''})" for s in seen
        )
        + ".",
    ]
    if crashes or losses or unclear or prep[1] or pred[1] or kill_failures:
        lines += ["", "Failing inputs (case = kind-seed.variant; `{dir}` is the case's folder):", ""]
        for o in [*crashes, *losses, *unclear]:
            what = o.crash or o.silent_loss or o.unclear
            shown = f" — said: “{o.message[:160]}”" if o.unclear else ""
            lines.append(
                f"- `{o.case.name}` exit {o.exit_code}: {what[:220]}{shown}; `custseq {shlex.join(o.case.args)}`"
            )
        if prep[1]:
            lines.append(f"- prepare leakage property: {prep[2]}")
        lines += [f"- predict leakage: {f}" for f in pred[2]]
        lines += [f"- kill: {f}" for f in kill_failures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)), help="fuzz corpus seeds")
    parser.add_argument("--whole-runs", type=int, default=2, help="whole predict runs on a spoiled shop")
    parser.add_argument("--leakage-examples", type=int, default=40, help="hypothesis examples (prepare)")
    parser.add_argument("--leakage-predict", type=int, default=2, help="predict-level leakage cases")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--kill-seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=None, help="RESULTS.md to write the section into")
    args = parser.parse_args()
    started = time.perf_counter()
    fuzzed = fuzz(args.seeds, args.whole_runs)
    print(f"fuzz: {len(fuzzed)} inputs, {sum(not o.ok for o in fuzzed)} failures", flush=True)
    prep = leakage_prepare(args.leakage_examples)
    print(f"leakage (prepare): {prep[:2]}", flush=True)
    pred = leakage_predict(list(range(args.leakage_predict)))
    print(f"leakage (predict): {pred[:2]}", flush=True)
    killed = kills(args.kill_seed, args.kills)
    print(f"kills: {len(killed[0])}, {len(killed[1])} failures", flush=True)
    text = section(args, fuzzed, prep, pred, killed, (time.perf_counter() - started) / 60)
    if args.out:
        write_section(args.out, text, HEADING)
    else:
        print(text)


if __name__ == "__main__":
    main()
