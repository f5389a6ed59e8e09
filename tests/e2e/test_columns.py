"""`custseq columns` and `custseq.columns`: every role, the column it maps to and how, as a user sees them."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import custseq
from custseq.cli import app
from custseq.schema import TABLES
from custseq.validate import roles

runner = CliRunner()


@pytest.fixture
def shop_csv(tmp_path: Path) -> Path:
    """Retail lines with user-style names: an id, a date, quantity and unit price (no amount), two extras."""
    rows = [
        {"CustomerID": f"{c:04d}", "InvoiceDate": f"2023-0{k + 1}-1{c} 10:00:00", "Quantity": 1 + k,
         "UnitPrice": 5.0 + c, "Country": "UK" if c % 2 else "FR", "Description": f"mug {c}-{k}"}
        for c in range(6) for k in range(4)
    ]  # fmt: skip
    path = tmp_path / "shop.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _line(output: str, *cells: str) -> bool:
    """True when one output line holds the cells in order, whatever the spacing between them."""
    pattern = r"\s+".join(re.escape(c) for c in cells)
    return any(re.search(pattern, line) for line in output.splitlines())


def test_columns_reports_detected_roles_the_computed_amount_and_the_extras(shop_csv):
    result = runner.invoke(app, ["columns", str(shop_csv)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert _line(out, "customer_id", "yes", "CustomerID", "detected")
    assert _line(out, "ts", "yes", "InvoiceDate", "detected")
    assert _line(out, "amount", "yes", "Quantity ×", "computed")
    assert _line(out, "quantity", "no", "Quantity", "detected")
    assert _line(out, "order_id", "no", "—", "missing")
    assert _line(out, "Country", "category", "country: a category field of the sequences")
    assert _line(out, "Description", "text", "description: kept, not used as a feature")
    assert "(all 24 rows read)" in " ".join(out.split())
    assert max(len(line) for line in out.splitlines()) <= 80  # readable in an 80-column terminal


def test_a_missing_required_role_shows_the_option_that_maps_it_and_exits_1(shop_csv, tmp_path):
    no_id = tmp_path / "no_id.csv"
    pd.read_csv(shop_csv).rename(columns={"CustomerID": "Buyer"}).to_csv(no_id, index=False)
    customers = tmp_path / "customers.csv"
    pd.DataFrame({"household": ["0001", "0002"], "joined": ["2020-01-01", "2021-02-03"]}).to_csv(customers, index=False)

    result = runner.invoke(app, ["columns", str(no_id), "--customers", str(customers)])

    assert result.exit_code == 1, result.output
    assert _line(result.output, "customer_id", "yes", "—", "missing")
    assert "map it with --column customer_id=<your column>" in result.output
    assert "map it with --column customers.customer_id=<your column>" in result.output
    assert _line(result.output, "signup_ts", "no", "joined", "detected")
    mapped = ["--column", "customer_id=Buyer", "--column", "customers.customer_id=household"]
    result = runner.invoke(app, ["columns", str(no_id), "--customers", str(customers), *mapped])
    assert result.exit_code == 0, result.output
    assert _line(result.output, "customer_id", "yes", "Buyer", "mapped")
    assert _line(result.output, "customer_id", "yes", "household", "mapped")
    assert "missing required" not in result.output


def test_a_mapped_column_that_never_parses_is_a_problem_and_the_rest_is_still_shown(shop_csv):
    result = runner.invoke(app, ["columns", str(shop_csv), "--column", "ts=Country"])
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())
    assert "problem: transactions column 'Country' (used as ts) could not be parsed in any row" in text
    assert _line(result.output, "ts", "yes", "Country", "mapped")
    assert _line(result.output, "InvoiceDate", "?")  # its kind is unknown until the mapping parses


def test_a_bad_mapping_fails_in_one_line_like_every_command(shop_csv):
    result = runner.invoke(app, ["columns", str(shop_csv), "--column", "colour=Country"])
    assert result.exit_code == 2
    assert "no column role 'colour'" in result.output and "Traceback" not in result.output


def test_the_python_function_returns_the_same_rows(shop_csv):
    frame = custseq.columns(str(shop_csv))
    assert list(frame.columns) == ["table", "role", "required", "meaning", "source", "how", "kind", "note"]
    by_role = frame[frame["role"].notna()].set_index("role")
    assert list(by_role.index) == list(TABLES["transactions"].names)
    assert by_role.loc["customer_id", ["source", "how", "required"]].tolist() == ["CustomerID", "detected", True]
    assert by_role.loc["amount", ["source", "how"]].tolist() == ["Quantity × UnitPrice", "computed"]
    assert pd.isna(by_role.loc["order_id", "source"]) and by_role.loc["order_id", "how"] == "missing"
    extras = frame[frame["role"].isna()].set_index("source")
    assert extras["kind"].to_dict() == {"Country": "category", "Description": "text"}
    assert extras.loc["Country", "meaning"] == "country: a category field of the sequences"
    # A missing required role's note is the option that maps it, as the CLI prints it.
    no_id = pd.read_csv(shop_csv).rename(columns={"CustomerID": "Buyer"})
    missing = custseq.columns(no_id).set_index("role").loc["customer_id"]
    assert (missing["how"], missing["note"]) == ("missing", "--column customer_id=<your column>")


def test_the_answer_is_the_one_validation_acts_on(shop_csv, tmp_path):
    customers = pd.DataFrame({"CustomerID": ["0001", "0002", "0003"], "Segment": ["a", "b", "a"], "Age": [30, 41, 52]})
    events = pd.DataFrame({"CustomerID": ["0001", "0002"], "ts": ["2023-01-02", "2023-02-03"],
                           "event": ["login", "visit"], "Page": ["home", "home"]})  # fmt: skip
    frame = custseq.columns(str(shop_csv), customers=customers, events=events)
    report = custseq.validate_tables(str(shop_csv), customers=customers, events=events)
    for name, account in report.accounts().items():
        rows = frame[frame["table"] == name]
        found = rows[rows["how"].isin(["mapped", "detected", "computed"])]
        hows = {r: "detected" if h == "computed" else h for r, h in zip(found["role"], found["how"], strict=True)}
        assert hows == {m.column: m.how for m in account.mapping}
        assert dict(zip(found["role"], found["source"], strict=True)) == {m.column: m.source for m in account.mapping}
        extras = rows[rows["how"] == "extra"]
        assert sorted(extras["kind"]) == sorted(account.extras.values())
    profile = frame[(frame["table"] == "customers") & (frame["source"] == "Age")]
    assert profile["meaning"].item() == "age: the profile feature profile_age, audited for bias"
    page = frame[(frame["table"] == "events") & (frame["source"] == "Page")]
    assert page["meaning"].item() == "page: a category field of the sequences (event_page)"


def test_only_the_first_rows_are_read(shop_csv, monkeypatch):
    monkeypatch.setattr(roles, "SAMPLE_ROWS", 5)
    result = runner.invoke(app, ["columns", str(shop_csv)])
    assert result.exit_code == 0, result.output
    assert "(first 5 rows read)" in " ".join(result.output.split())


@pytest.mark.parametrize("args", [["columns"], ["columns", "--roles"]])
def test_without_data_it_lists_every_role_of_every_table(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for spec in TABLES.values():
        for col in spec.columns:
            assert _line(result.output, col.name, "yes" if col.required else "no", col.kind.value), col.name
    assert max(len(line) for line in result.output.splitlines()) <= 80
    contract = custseq.columns()
    assert len(contract) == sum(len(t.columns) for t in TABLES.values())
    assert contract["source"].isna().all() and contract["note"].str.startswith("names detected: ").all()


def test_validate_explain_prints_the_roles_before_validating(shop_csv, tmp_path):
    result = runner.invoke(app, ["validate", str(shop_csv), "--explain", "--quarantine-dir", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert _line(result.output, "amount", "yes", "Quantity ×", "computed")
    assert result.output.index("columns without a role") < result.output.index("all passed validation")
