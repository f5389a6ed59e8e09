"""Run one corpus case through the command line and judge it: a crash, a silent loss, an unclear error, or fine.

- **crash**: an exception other than the command's own exit (what a user sees as a traceback), a traceback in
  the output, or an exit code other than 0 and 2 (1 is "please report this bug").
- **silent loss**: exit 0, yet rows in ≠ rows used + rows quarantined, or rows in ≠ the independent count of the
  file's records (:func:`tests.fuzz.corpus.independent_count`), or no row account at all, or a quarantine file
  that does not hold the rows quarantined.
- **unclear error**: exit 2 without exactly one ``error:`` line (or Click's usage box for an option it cannot
  parse); or a message shorter than :data:`MIN_MESSAGE` characters; or one in a library's words
  (:data:`LIBRARY_WORDS`); or one that names nothing of the case — none of its files, header columns, options or
  config keys — or, where the case says what the error is about (``Case.says``), not that.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from tests.fuzz.corpus import Case, independent_count
from typer.testing import CliRunner

from custseq.cli import app

MIN_MESSAGE = 30
LIBRARY_WORDS = (
    "CSV Error on Line", "Error when sniffing", "not supported between instances", "object has no attribute",
    "invalid literal", "Conversion Error", "Binder Error", "Parser Error", "Invalid Input Error", "unhashable",
    "NoneType", "Errno", "KeyError", "IndexError", "list index", "codec can't decode", "Traceback",
)  # fmt: skip
ACCOUNT = re.compile(r"(\w+): ([\d,]+) rows in = ([\d,]+) used \+ ([\d,]+) quarantined")
ALL_PASSED = re.compile(r"(\w+): ([\d,]+) rows, all passed validation")
USAGE_BOX = re.compile(r"(Invalid value for|No such option|Missing argument|Missing option|requires an argument)")


@dataclass(frozen=True)
class Outcome:
    case: Case
    exit_code: int
    output: str
    seconds: float
    crash: str | None = None
    silent_loss: str | None = None
    unclear: str | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return not (self.crash or self.silent_loss or self.unclear)

    def problem(self) -> str:
        what = self.crash or self.silent_loss or self.unclear or "fine"
        return f"{self.case.name}: exit {self.exit_code}: {what}\n  args: {list(self.case.args)}\n{self.output[-1500:]}"


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def run_case(case: Case, folder: Path | None = None) -> Outcome:
    """Write the case into ``folder`` (default a new temporary one), run its command in-process, judge it."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="custseq-fuzz-") as tmp:
            return run_case(case, Path(tmp))
    case.write(folder)
    started = time.perf_counter()
    with _inside(folder):
        result = CliRunner().invoke(app, case.command(folder))
    seconds = time.perf_counter() - started
    output = result.output
    code = result.exit_code
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        tb = "".join(traceback.format_exception(exc)).strip().splitlines()
        return Outcome(case, code, output, seconds, crash=f"{type(exc).__name__}: {exc!s:.300} at {tb[-3:-1]}")
    if "Traceback (most recent call last)" in output:
        return Outcome(case, code, output, seconds, crash="a traceback in the output")
    if code not in (0, 2):
        return Outcome(case, code, output, seconds, crash=f"exit code {code}")
    if code == 2:
        message, unclear = judge_message(case, output)
        return Outcome(case, code, output, seconds, unclear=unclear, message=message)
    return Outcome(case, code, output, seconds, silent_loss=account_problem(case, folder, output))


def judge_message(case: Case, output: str) -> tuple[str, str | None]:
    """The error message of an exit 2 and why it is unclear (None: clear)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    if len(lines) == 1:
        message = lines[0].removeprefix("error:").strip()
    elif not lines and USAGE_BOX.search(output):  # Click refusing an option's value names the option
        message = " ".join(line.strip("│╭╮╰╯─ ") for line in output.splitlines() if line.startswith("│"))
    else:
        return output.strip()[-300:], f"{len(lines)} 'error:' lines"
    said = message.casefold()
    if len(message) < MIN_MESSAGE:
        return message, f"a message of {len(message)} characters"
    library = [w for w in LIBRARY_WORDS if w.casefold() in said]
    if library:
        return message, f"in a library's words ({library[0]!r})"
    if not any(w.casefold() in said for w in case.mentions() | set(case.says)):
        return message, "names none of the case's files, columns, options or settings"
    if case.says and not any(w.casefold() in said for w in case.says):
        return message, f"does not say what is wrong (expected one of {list(case.says)})"
    return message, None


def accounts(case: Case, folder: Path, output: str) -> dict[str, tuple[int, int, int]]:
    """Each table's (rows in, used, quarantined): from the printed account (validate) or the run's JSON."""
    for name in ("out/prepare.json", "out/metrics.json"):
        path = folder / name
        if case.args[0] != "validate" and path.is_file():
            tables = json.loads(path.read_text())["tables"]
            return {t: (a["rows_in"], a["rows_used"], a["rows_quarantined"]) for t, a in tables.items()}
    said = " ".join(output.split())
    found = {m[1]: tuple(int(x.replace(",", "")) for x in m.groups()[1:]) for m in ACCOUNT.finditer(said)}
    found |= {m[1]: (int(m[2].replace(",", "")), int(m[2].replace(",", "")), 0) for m in ALL_PASSED.finditer(said)}
    return found  # type: ignore[return-value]


def account_problem(case: Case, folder: Path, output: str) -> str | None:
    """Why the row account of an exit 0 does not hold (None: it holds)."""
    found = accounts(case, folder, output)
    if "transactions" not in found:
        return "no row account for transactions"
    for table, (rows_in, used, quarantined) in found.items():
        if rows_in != used + quarantined:
            return f"{table}: {rows_in} rows in ≠ {used} used + {quarantined} quarantined"
    rows_in, _, quarantined = found["transactions"]
    expected = independent_count(case, folder)
    if case.data and expected is None:
        return f"exit 0 on a file Python's csv reader cannot read ({rows_in} rows in)"
    if expected is not None and rows_in != expected:
        return f"{rows_in} rows in, but the file holds {expected} records"
    q = next((p for p in (folder / "q", folder / "out" / "quarantine") if p.is_dir()), None)
    if q is not None and case.args[0] == "validate":
        written = pq.read_table(q / "transactions.parquet").num_rows if (q / "transactions.parquet").exists() else 0
        if written != quarantined:
            return f"{quarantined} rows quarantined, but {written} in the quarantine file"
    return None
