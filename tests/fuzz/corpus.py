"""A corpus of malformed inputs for the command line, generated from a seed (nothing is committed as a blob).

Every kind is a function of a :class:`random.Random` that returns one :class:`Case`: the files to write into an
empty folder and the command line to run there. The same seed gives the same bytes. Kinds cover the files
(encodings, delimiters, quotes, ragged and blank lines, odd numbers, dates and ids, headers, compression,
Parquet types), the configs (wrong types, unknown keys, deep nesting) and the options (dates, horizons, paths).

:func:`independent_count` counts a case's data records without custseq: Python's :mod:`csv` with the delimiter
and encoding the generator wrote, or a Parquet file's own row count.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HEADER = ["customer_id", "ts", "amount", "product"]
FIRST_DAY = dt.datetime(2023, 1, 1, 9)


@dataclass(frozen=True)
class Case:
    """One input: files written into a folder, then ``custseq <args>`` run there (``{dir}`` is the folder)."""

    name: str
    files: dict[str, bytes]
    args: tuple[str, ...]
    data: tuple[str, ...] = ()  # the transactions files, for the independent count
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    says: tuple[str, ...] = ()  # an error, if there is one, names one of these (case aside)

    @property
    def kind(self) -> str:
        return self.name.rsplit("-", 1)[0]

    def command(self, folder: Path) -> list[str]:
        return [a.replace("{dir}", str(folder)) for a in self.args]

    def write(self, folder: Path) -> None:
        for name, content in self.files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)

    def mentions(self) -> set[str]:
        """Words an actionable error about this case can name: its files, columns and options."""
        words = {Path(n).name for n in self.files} | {a for a in self.args if a.startswith("--")}
        words |= {w for a in self.args if a.startswith("--") for w in (a.lstrip("-"), a.lstrip("-").replace("-", "_"))}
        for name, content in self.files.items():
            if name.endswith((".csv", ".tsv", ".txt")):
                first = content[:2000].decode("utf-8", "replace").splitlines()[:1]
                words |= {w.strip().strip('"') for w in (first[0] if first else "").split(self.delimiter)}
            if name.endswith(".parquet"):
                with contextlib.suppress(pa.ArrowException, OSError):
                    words |= set(pq.read_schema(io.BytesIO(content)).names)
            if name.endswith((".toml", ".json")):
                words |= {w for w in _config_words(content) if len(w) > 2}
        return {w for w in words if w}


@dataclass
class Rows:
    """A clean small shop as text fields, to be spoiled by a kind."""

    rows: list[list[str]] = field(default_factory=list)

    @classmethod
    def shop(cls, rng: random.Random, n: int | None = None) -> Rows:
        n = n or rng.randrange(6, 40)
        out = []
        for _ in range(n):
            ts = FIRST_DAY + dt.timedelta(days=rng.randrange(180), minutes=rng.randrange(600))
            out.append([f"c{rng.randrange(12):03d}", f"{ts:%Y-%m-%d %H:%M:%S}", f"{rng.uniform(1, 90):.2f}",
                        f"p{rng.randrange(5)}"])  # fmt: skip
        return cls(out)

    def set(self, rng: random.Random, column: int, values: list[str], share: float = 0.3) -> Rows:
        """Put ``values`` into ``column`` of some rows (at least one)."""
        picked = [i for i in range(len(self.rows)) if rng.random() < share] or [rng.randrange(len(self.rows))]
        for i in picked:
            self.rows[i][column] = rng.choice(values)
        return self

    def csv(self, header: list[str] = HEADER, delimiter: str = ",", newline: str = "\n") -> str:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=delimiter, lineterminator=newline)
        writer.writerow(header)
        writer.writerows(self.rows)
        return buf.getvalue()

    def lines(self, header: list[str] = HEADER) -> list[str]:
        return self.csv(header).splitlines()


def _validate(*data: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    return ("validate", *(f"{{dir}}/{d}" for d in data), "--quarantine-dir", "{dir}/q", *extra)


def _csv_case(name: str, text: str | bytes, *, extra: tuple[str, ...] = (), file: str = "tx.csv", **kw) -> Case:
    content = text.encode() if isinstance(text, str) else text
    return Case(name, {file: content}, _validate(file, extra=extra), data=(file,), **kw)


def _insert(rng: random.Random, lines: list[str], bad: list[str]) -> str:
    """The lines with ``bad`` lines put at random places after the header."""
    out = list(lines)
    for b in bad:
        out.insert(rng.randrange(1, len(out) + 1), b)
    return "\n".join(out) + "\n"


# --- encodings and line structure --------------------------------------------------------------------------------


def latin1(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["café", "crème brûlée", "Müsli", "jalapeño"])
    return _csv_case("latin1", rows.csv().encode("latin-1"), says=("encoding",))


def utf16(rng: random.Random) -> Case:
    enc = rng.choice(["utf-16", "utf-16-le", "utf-16-be"])
    return _csv_case("utf16", Rows.shop(rng).csv().encode(enc), says=("encoding", "utf"), encoding=enc)


def utf8_bom(rng: random.Random) -> Case:
    return _csv_case("utf8_bom", b"\xef\xbb\xbf" + Rows.shop(rng).set(rng, 3, ["Ünïcödé", "日本", "😀"]).csv().encode())


def cp1252_quotes(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["“quoted”", "euro €", "dash –"])
    return _csv_case("cp1252_quotes", rows.csv().encode("cp1252"), says=("encoding",))


def delimiter(rng: random.Random) -> Case:
    sep = rng.choice([";", "\t", "|"])
    return _csv_case("delimiter", Rows.shop(rng).csv(delimiter=sep), delimiter=sep)


def comma_decimal_semicolon(rng: random.Random) -> Case:
    rows = Rows.shop(rng)
    for r in rows.rows:
        r[2] = r[2].replace(".", ",")
    return _csv_case("comma_decimal_semicolon", rows.csv(delimiter=";"), delimiter=";")


def quote_left_open(rng: random.Random) -> Case:
    lines = Rows.shop(rng).lines()
    i = rng.randrange(1, len(lines))
    fields = lines[i].split(",")
    fields[rng.choice([0, 3])] = '"' + fields[0]
    lines[i] = ",".join(fields)
    return _csv_case("quote_left_open", "\n".join(lines) + "\n", says=("quote", "line", "record"))


def quote_open_last_line(rng: random.Random) -> Case:
    lines = Rows.shop(rng).lines()
    lines[-1] = lines[-1] + ',"unterminated'
    return _csv_case("quote_open_last_line", "\n".join(lines) + "\n", says=("quote", "line", "record"))


def quoted_newline(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["line one\nline two", "a\r\nb", '"he said ""hi"""'])
    return _csv_case("quoted_newline", rows.csv())


def ragged(rng: random.Random) -> Case:
    lines = Rows.shop(rng).lines()
    bad = [rng.choice(["c001,2023-02-02", "c002,2023-02-02 10:00:00,5,p1,extra,more", "c003", ",,,,,,", "x,y"])
           for _ in range(rng.randrange(1, 4))]  # fmt: skip
    return _csv_case("ragged", _insert(rng, lines, bad))


def blank_lines(rng: random.Random) -> Case:
    lines = Rows.shop(rng).lines()
    bad = [rng.choice(["", " ", "\t", ",,,"]) for _ in range(rng.randrange(1, 5))]
    text = _insert(rng, lines, bad) + "\n" * rng.randrange(0, 3)
    return _csv_case("blank_lines", text)


def comment_lines(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 0, ["#c001", "# c002", "//c003", ";c004", "--c005"])
    text = rows.csv()
    if rng.random() < 0.7:
        text += rng.choice(["# exported by ERP\n", "#EOF\n", "-- end --\n", "# total: 12 rows\n"])
    return _csv_case("comment_lines", text)


def line_endings(rng: random.Random) -> Case:
    lines = Rows.shop(rng).lines()
    how = rng.choice(["crlf", "mixed", "cr"])
    if how == "crlf":
        text = "\r\n".join(lines) + "\r\n"
    elif how == "cr":
        text = "\r".join(lines) + "\r"
    else:
        text = "".join(line + rng.choice(["\n", "\r\n"]) for line in lines)
    return _csv_case("line_endings", text)


def nul_bytes(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["p\x001", "\x00", "a\x00b\x00c"])
    return _csv_case("nul_bytes", rows.csv())


def control_chars(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["\x1b[31mred", "\x07bell", "\x7f", "tab\there", "\u2028sep", "\ufeffbom"])
    return _csv_case("control_chars", rows.csv())


def no_trailing_newline(rng: random.Random) -> Case:
    return _csv_case("no_trailing_newline", Rows.shop(rng).csv().rstrip("\n"))


def whitespace_aligned(rng: random.Random) -> Case:
    rows = Rows.shop(rng)
    text = "\n".join("  ".join(f"{f:<20}" for f in r) for r in [HEADER, *rows.rows]) + "\n"
    return _csv_case("whitespace_aligned", text, says=("column", "delimit"))


def single_column(rng: random.Random) -> Case:
    text = "customer_id\n" + "\n".join(f"c{rng.randrange(9)}" for _ in range(rng.randrange(1, 9))) + "\n"
    return _csv_case("single_column", text, says=("column", "missing"))


# --- values ------------------------------------------------------------------------------------------------------


def amounts(rng: random.Random) -> Case:
    odd = ["1e30", "1e308", "1e400", "-1e400", "-5", "NaN", "nan", "inf", "-inf", "Infinity", "1_000", "1,000.50",
           "€12", "$3.50", "12 EUR", "", " ", "abc", "0x1F", "1.2.3", "--4", "+7", ".5", "5.", "1e-320", "(12.00)",
           "12%", "١٢", "999999999999999999999999999999", "0"]  # fmt: skip
    return _csv_case("amounts", Rows.shop(rng).set(rng, 2, odd, share=0.5).csv())


def dates(rng: random.Random) -> Case:
    odd = ["2023-13-45", "31/02/2023", "02/03/2023", "03/02/23", "2023/03/04", "04.03.2023", "20230304", "1678000000",
           "1678000000000", "9999-12-31", "0001-01-01", "1900-01-01", "2099-01-01", "2023-03-04T10:00:00Z",
           "2023-03-04T10:00:00+05:30", "2023-03-04 10:00:00 Europe/Paris", "March 4, 2023", "4 Mar 2023", "", "soon",
           "NULL", "2023-03-04 25:61:61", "-2023-03-04", "2023-3-4", "１２/０３/２０２３"]  # fmt: skip
    return _csv_case("dates", Rows.shop(rng).set(rng, 1, odd, share=rng.choice([0.1, 0.5, 0.9])).csv(),
                     says=("ts", "date", "timestamp", "format"))  # fmt: skip


def dates_one_format(rng: random.Random) -> Case:
    """Every date written one odd way: the format is either settled by the data or refused, never guessed."""
    how = rng.choice(["%d/%m/%Y", "%m/%d/%Y", "%m/%d/%y", "%d.%m.%Y", "%Y%m%d", "epoch_s", "epoch_ms", "%d %b %Y"])
    rows = Rows.shop(rng)
    for r in rows.rows:
        ts = dt.datetime.strptime(r[1], "%Y-%m-%d %H:%M:%S")
        epoch = int(ts.replace(tzinfo=dt.UTC).timestamp())
        r[1] = str(epoch) if how == "epoch_s" else str(epoch * 1000) if how == "epoch_ms" else ts.strftime(how)
    return _csv_case("dates_one_format", rows.csv(), says=("ts", "date", "timestamp", "format"))


def ids(rng: random.Random) -> Case:
    odd = ["", " ", "NULL", "None", "NaN", "N/A", "null", "-", "=1+1", "=HYPERLINK(\"x\")", "+1", "@SUM(A1)",
           "😀", "ид", "مرحبا", "x" * 5000, "1e39", "17", "17.0", "1.7e308", "c001 ", " c001", "c\u200b001",
           "0", "-1", "0001", "true"]  # fmt: skip
    return _csv_case("ids", Rows.shop(rng).set(rng, 0, odd, share=0.4).csv())


def products(rng: random.Random) -> Case:
    odd = ["", "NULL", "=cmd|' /C calc'!A0", "p" * 3000, "😀", "a,b", 'a"b', "123", "1.5"]
    return _csv_case("products", Rows.shop(rng).set(rng, 3, odd, share=0.4).csv())


def duplicate_rows(rng: random.Random) -> Case:
    rows = Rows.shop(rng)
    rows.rows += [list(r) for r in rng.sample(rows.rows, k=min(len(rows.rows), rng.randrange(1, 6)))]
    rng.shuffle(rows.rows)
    extra = ("--duplicates", rng.choice(["auto", "quarantine", "keep"]))
    return _csv_case("duplicate_rows", rows.csv(), extra=extra)


def extra_columns(rng: random.Random) -> Case:
    rows = Rows.shop(rng)
    header = [*HEADER, "discount", "region", "note", ""]
    values = [["0.1", "N/A", "", "ten", "1e3"], ["north", "", "NULL", "42"], ["a", "b,c", "😀"], ["", "x"]]
    for r in rows.rows:
        r += [rng.choice(v) for v in values]
    return _csv_case("extra_columns", rows.csv(header))


def many_columns(rng: random.Random) -> Case:
    n = rng.choice([50, 500, 3000])
    rows = Rows.shop(rng, 5)
    header = HEADER + [f"x{i}" for i in range(n)]
    for r in rows.rows:
        r += [str(rng.randrange(3)) for _ in range(n)]
    return _csv_case("many_columns", rows.csv(header))


def long_line(rng: random.Random) -> Case:
    rows = Rows.shop(rng).set(rng, 3, ["y" * rng.choice([200_000, 3_000_000])], share=0.05)
    return _csv_case("long_line", rows.csv(), says=("line", "long", "size"))


# --- headers -----------------------------------------------------------------------------------------------------


def duplicate_header(rng: random.Random) -> Case:
    header = rng.choice([[*HEADER, "amount"], [*HEADER, "Amount"], ["customer_id", "ts", "ts", "amount"],
                         [*HEADER, " amount "]])  # fmt: skip
    rows = Rows.shop(rng)
    for r in rows.rows:
        r += ["1"] * (len(header) - len(r))
        del r[len(header) :]
    return _csv_case("duplicate_header", rows.csv(header), says=("amount", "ts", "more than once", "duplicat"))


def missing_column(rng: random.Random) -> Case:
    drop = rng.randrange(3)
    rows = Rows.shop(rng)
    header = [h for i, h in enumerate(HEADER) if i != drop]
    text = rows.csv(header=header).splitlines()[0] + "\n"
    text += "".join(",".join(f for i, f in enumerate(r) if i != drop) + "\n" for r in rows.rows)
    return _csv_case("missing_column", text, says=(HEADER[drop], "missing"))


def odd_header(rng: random.Random) -> Case:
    header = rng.choice([["", "", "", ""], ["__row", "ts", "amount", "product", "customer_id"],
                         ["customer id", "time stamp", "amount ($)", "product"], ["1", "2", "3", "4"],
                         ["CUSTOMER_ID", "TS", "AMOUNT", "PRODUCT"],
                         ['"customer_id"', "ts", "amount", "product"]])  # fmt: skip
    rows = Rows.shop(rng)
    for r in rows.rows:
        r += ["x"] * (len(header) - len(r))
    return _csv_case("odd_header", rows.csv(header), says=("column", "customer_id", "__row", "header"))


def mapped_columns(rng: random.Random) -> Case:
    mapping = rng.choice([["customer_id"], ["=x"], ["customer_id="], ["amount=Quantity*"], ["ts=nope"],
                          ["amount=amount*amount"], ["customer_id=customer_id", "customer_id=product"],
                          ["amount=1/0"], ["colour=product"], ["transactions.amount=amount"]])  # fmt: skip
    extra = tuple(x for m in mapping for x in ("--column", m))
    return _csv_case("mapped_columns", Rows.shop(rng).csv(), extra=extra)


# --- files that are not what they say ----------------------------------------------------------------------------


def empty_file(rng: random.Random) -> Case:
    text = rng.choice(["", "\n", "\n\n\n", " ", "\r\n", ",,,\n"])
    return _csv_case("empty_file", text, says=("empty", "no rows", "header", "column"))


def header_only(rng: random.Random) -> Case:
    return _csv_case(
        "header_only", ",".join(HEADER) + rng.choice(["", "\n", "\n\n"]), says=("no rows", "empty", "blank")
    )


def binary_junk(rng: random.Random) -> Case:
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(10, 5000)))
    return _csv_case("binary_junk", junk, says=("encoding", "column", "read", "line", "empty", "rows"))


def gzip_ok(rng: random.Random) -> Case:
    return _csv_case("gzip_ok", gzip.compress(Rows.shop(rng).csv().encode(), mtime=0), file="tx.csv.gz")


def gzip_truncated(rng: random.Random) -> Case:
    whole = gzip.compress(Rows.shop(rng, 200).csv().encode(), mtime=0)
    cut = whole[: rng.randrange(5, len(whole) - 1)]
    return _csv_case("gzip_truncated", cut, file="tx.csv.gz", says=("gzip", "compress", "truncated", "read"))


def not_gzip(rng: random.Random) -> Case:
    return _csv_case("not_gzip", Rows.shop(rng).csv(), file="tx.csv.gz", says=("gzip", "compress", "read"))


def parquet_named_csv(rng: random.Random) -> Case:
    buf = io.BytesIO()
    pq.write_table(pa.table({"customer_id": ["a"], "ts": ["2023-01-01"], "amount": [1.0]}), buf)
    return _csv_case("parquet_named_csv", buf.getvalue(), says=("encoding", "read", "column", "parquet"))


def wrong_extension(rng: random.Random) -> Case:
    name = rng.choice(["tx.xlsx", "tx.json", "tx", "tx.CSV", "tx.csv.bak", "tx.Parquet"])
    text = Rows.shop(rng).csv().encode()
    return Case("wrong_extension", {name: text}, _validate(name), data=(name,) if name == "tx.CSV" else (),
                says=("format", "csv", "parquet"))  # fmt: skip


def several_files(rng: random.Random) -> Case:
    a, b = Rows.shop(rng), Rows.shop(rng)
    second = b.csv(header=rng.choice([HEADER, HEADER[::-1], [*HEADER, "region"]]))
    if "region" in second.splitlines()[0]:
        second = "\n".join(line + ",north" if i else line for i, line in enumerate(second.splitlines())) + "\n"
    files = {"a.csv": a.csv().encode(), "b.csv": second.encode()}
    return Case("several_files", files, _validate("a.csv", "b.csv"), data=("a.csv", "b.csv"))


def mixed_formats(rng: random.Random) -> Case:
    buf = io.BytesIO()
    pq.write_table(pa.table({"customer_id": ["a"], "ts": ["2023-01-01"], "amount": [1.0]}), buf)
    files = {"a.csv": Rows.shop(rng).csv().encode(), "b.parquet": buf.getvalue()}
    return Case("mixed_formats", files, _validate("a.csv", "b.parquet"), says=("format", "mixed"))


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def parquet_types(rng: random.Random) -> Case:
    n = rng.randrange(3, 30)
    ts = [FIRST_DAY + dt.timedelta(days=rng.randrange(180)) for _ in range(n)]
    ids = [f"c{rng.randrange(9)}" for _ in range(n)]
    how = rng.choice(["ts_text", "ts_int", "ts_date", "ts_tz", "ts_ns", "amount_text", "amount_decimal",
                      "amount_int8", "id_int", "id_float", "id_binary", "list_col", "struct_col", "null_col",
                      "dictionary", "amount_null", "id_large_string", "bool_amount"])  # fmt: skip
    cols: dict[str, pa.Array] = {
        "customer_id": pa.array(ids),
        "ts": pa.array(ts, pa.timestamp("us")),
        "amount": pa.array([rng.uniform(-5, 90) for _ in range(n)]),
    }
    if how == "ts_text":
        cols["ts"] = pa.array([f"{t:%d/%m/%Y}" if rng.random() < 0.5 else "junk" for t in ts])
    elif how == "ts_int":
        cols["ts"] = pa.array([int(t.timestamp()) for t in ts])
    elif how == "ts_date":
        cols["ts"] = pa.array([t.date() for t in ts])
    elif how == "ts_tz":
        cols["ts"] = pa.array([t.replace(tzinfo=dt.UTC) for t in ts], pa.timestamp("ms", tz="America/New_York"))
    elif how == "ts_ns":
        cols["ts"] = pa.array(ts, pa.timestamp("ns"))
    elif how == "amount_text":
        cols["amount"] = pa.array([rng.choice(["1.5", "abc", "", "1e400", "NaN"]) for _ in range(n)])
    elif how == "amount_decimal":
        cols["amount"] = pa.array([rng.randrange(10**6) for _ in range(n)], pa.int64()).cast(pa.decimal128(38, 2))
    elif how == "amount_int8":
        cols["amount"] = pa.array([rng.randrange(-128, 128) for _ in range(n)], pa.int8())
    elif how == "id_int":
        cols["customer_id"] = pa.array([rng.randrange(-3, 2**62) for _ in range(n)], pa.int64())
    elif how == "id_float":
        cols["customer_id"] = pa.array([rng.choice([1.0, 2.5, float("nan"), 1e39, -0.0]) for _ in range(n)])
    elif how == "id_binary":
        cols["customer_id"] = pa.array([bytes([rng.randrange(256)]) * 3 for _ in range(n)], pa.binary())
    elif how == "list_col":
        cols["product"] = pa.array([[f"p{rng.randrange(3)}"] * rng.randrange(3) for _ in range(n)])
    elif how == "struct_col":
        cols["product"] = pa.array([{"a": rng.randrange(3), "b": "x"} for _ in range(n)])
    elif how == "null_col":
        cols["product"] = pa.nulls(n)
    elif how == "dictionary":
        cols["customer_id"] = pa.array(ids).dictionary_encode()
    elif how == "amount_null":
        cols["amount"] = pa.array([None] * n, pa.float64())
    elif how == "id_large_string":
        cols["customer_id"] = pa.array(ids, pa.large_string())
    elif how == "bool_amount":
        cols["amount"] = pa.array([rng.random() < 0.5 for _ in range(n)])
    content = _parquet(pa.table(cols))
    return Case("parquet_types", {"tx.parquet": content}, _validate("tx.parquet"), data=("tx.parquet",))


def parquet_broken(rng: random.Random) -> Case:
    whole = _parquet(pa.table({"customer_id": ["a", "b"], "ts": ["2023-01-01", "2023-01-02"], "amount": [1.0, 2.0]}))
    how = rng.choice(["truncated", "empty_table", "zero_bytes", "no_columns", "duplicate_names"])
    if how == "truncated":
        content = whole[: rng.randrange(4, len(whole) - 1)]
    elif how == "empty_table":
        content = _parquet(pa.table({"customer_id": pa.array([], pa.string()), "ts": pa.array([], pa.string()),
                                     "amount": pa.array([], pa.float64())}))  # fmt: skip
    elif how == "zero_bytes":
        content = b""
    elif how == "no_columns":
        content = _parquet(pa.table({}))
    else:
        arrays = [pa.array(["a"]), pa.array(["2023-01-01"]), pa.array([1.0]), pa.array([2.0])]
        content = _parquet(pa.Table.from_arrays(arrays, names=["customer_id", "ts", "amount", "amount"]))
    return Case("parquet_broken", {"tx.parquet": content}, _validate("tx.parquet"),
                says=("parquet", "read", "rows", "column", "empty", "amount"))  # fmt: skip


def duckdb_table(rng: random.Random) -> Case:
    target = rng.choice(["tx.duckdb:nope", "tx.duckdb", "tx.duckdb:", "missing.duckdb:t"])
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
    return Case("duckdb_table", {"tx.duckdb": junk}, ("validate", f"{{dir}}/{target}", "--quarantine-dir", "{dir}/q"),
                says=("duckdb", "table", "exist", "open"))  # fmt: skip


# --- tables beside the transactions ------------------------------------------------------------------------------


def customers_table(rng: random.Random) -> Case:
    shop = Rows.shop(rng)
    header = rng.choice([["customer_id", "signup_ts"], ["customer_id", "signup_ts", "region"], ["signup_ts"],
                         ["customer_id", "customer_id"]])  # fmt: skip
    lines = [",".join(header)]
    for i in range(rng.randrange(0, 8)):
        values = [rng.choice(["c001", "", "NULL", f"c{i:03d}"]), rng.choice(["2022-01-01", "junk", "", "01/02/03"]),
                  rng.choice(["north", ""])]  # fmt: skip
        lines.append(",".join(values[: len(header)]))
    files = {"tx.csv": shop.csv().encode(), "customers.csv": ("\n".join(lines) + "\n").encode()}
    args = _validate("tx.csv", extra=("--customers", "{dir}/customers.csv"))
    return Case("customers_table", files, args, data=("tx.csv",), says=("customers", "customer_id", "rows"))


def events_table(rng: random.Random) -> Case:
    shop = Rows.shop(rng)
    lines = ["customer_id,ts,event"]
    for _ in range(rng.randrange(0, 8)):
        lines.append(",".join([rng.choice(["c001", "", "NULL"]), rng.choice(["2023-02-01", "x", ""]),
                               rng.choice(["view", "", "=1+1"])]))  # fmt: skip
    files = {"tx.csv": shop.csv().encode(), "events.csv": ("\n".join(lines) + "\n").encode()}
    args = _validate("tx.csv", extra=("--events", "{dir}/events.csv"))
    return Case("events_table", files, args, data=("tx.csv",), says=("events", "rows"))


# --- configs -----------------------------------------------------------------------------------------------------


def _config_words(content: bytes) -> set[str]:
    text = content[:5000].decode("utf-8", "replace")
    return {w.strip("[]\"' ") for line in text.splitlines() for w in line.replace("=", " ").replace(".", " ").split()}


def _with_config(
    name: str, rng: random.Random, text: str | bytes, suffix: str = ".toml", says: tuple[str, ...] = ()
) -> Case:
    content = text.encode() if isinstance(text, str) else text
    file = f"cfg{suffix}"
    args = _validate("tx.csv", extra=("--config", f"{{dir}}/{file}"))
    return Case(name, {"tx.csv": Rows.shop(rng).csv().encode(), file: content}, args, data=("tx.csv",), says=says)


def config_wrong_type(rng: random.Random) -> Case:
    text = rng.choice([
        '[validation]\nmax_abs_amount = "big"\n', "[validation]\nduplicates = 3\n", "[window]\nhorizon_days = \"90\"\n",
        "[window]\nas_of = 20230101\n", "[validation]\nmin_date = \"yesterday\"\n", "[window]\nhorizon_days = -5\n",
        "[validation]\nfar_past_years = true\n", "[sequence]\nmax_events = 1.5\n", "[columns]\ntransactions = 5\n",
        "[columns.transactions]\ncustomer_id = 7\n", "validation = 3\n", "[validation]\ncurrencies = \"EUR\"\n",
        "[window]\nmax_train_windows = 0\n", "[engine]\nthreads = -1\n", "[engine]\nmemory_limit = \"lots\"\n",
        "[validation]\nmax_days_after_as_of = 1e9\n", "[window]\nhorizon_days = 1e400\n",
    ])  # fmt: skip
    return _with_config("config_wrong_type", rng, text)


def config_unknown_key(rng: random.Random) -> Case:
    text = rng.choice(["[validaton]\nmax_abs_amount = 5\n", "[validation]\nmax_abs = 5\n", "surprise = 1\n",
                       "[model.encoder.deeper]\nx = 1\n", "[columns.orders]\nid = \"x\"\n"])  # fmt: skip
    return _with_config("config_unknown_key", rng, text)


def config_ts_format(rng: random.Random) -> Case:
    fmt = rng.choice(["%Q", "%", "%Y", "", "epoch_fortnights", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S", "%s", "%%", "%Y-%m"])
    return _with_config("config_ts_format", rng, f'[validation]\nts_format = "{fmt}"\n', says=("ts_format", "format"))


def config_deep(rng: random.Random) -> Case:
    depth = rng.choice([50, 1000, 100_000])
    if rng.random() < 0.5:
        return _with_config("config_deep", rng, "[" * depth + "]" * depth, suffix=".json")
    keys = ".".join(f"k{i}" for i in range(min(depth, 5000)))
    return _with_config("config_deep", rng, f"[validation]\n{keys} = 1\n")


def config_syntax(rng: random.Random) -> Case:
    text, suffix = rng.choice([("[validation\n", ".toml"), ("x = = 1\n", ".toml"), ("{", ".json"), ("[1, 2]", ".json"),
                               ("null", ".json"), ('"text"', ".json"), ("", ".toml"), ("", ".json"),
                               ("\xff\xfe\x00junk", ".toml"), ("a: 1\n", ".yaml")])  # fmt: skip
    return _with_config("config_syntax", rng, text.encode("latin-1"), suffix=suffix)


def config_path(rng: random.Random) -> Case:
    target = rng.choice(["{dir}/missing.toml", "{dir}", "/dev/null", "{dir}/tx.csv"])
    args = _validate("tx.csv", extra=("--config", target))
    return Case("config_path", {"tx.csv": Rows.shop(rng).csv().encode()}, args, data=("tx.csv",),
                says=("config", "toml", "json"))  # fmt: skip


# --- options -----------------------------------------------------------------------------------------------------


def option_as_of(rng: random.Random) -> Case:
    value = rng.choice(["2023-13-45", "9999-12-31", "0001-01-01", "yesterday", "", "2023-02-30", "1970-01-01",
                        "2023-06-30T10:00:00", "2023/06/30", "-1", "2023-06-30 ; rm -rf /",
                        "２０２３-０６-３０"])  # fmt: skip
    extra = ("--as-of", value, *(("--forbid-future",) if rng.random() < 0.5 else ()))
    return _csv_case("option_as_of", Rows.shop(rng).csv(), extra=extra, says=("as-of", "as_of", "date"))


def option_amount_limit(rng: random.Random) -> Case:
    value = rng.choice(["-1", "0", "nan", "inf", "1e400", "abc", "", "1e-300"])
    return _csv_case("option_amount_limit", Rows.shop(rng).csv(), extra=("--max-abs-amount", value),
                     says=("max-abs-amount", "max_abs_amount", "amount"))  # fmt: skip


def option_duplicates(rng: random.Random) -> Case:
    value = rng.choice(["sometimes", "", "KEEP", "quarantine ", "1"])
    return _csv_case("option_duplicates", Rows.shop(rng).csv(), extra=("--duplicates", value),
                     says=("duplicates",))  # fmt: skip


def option_quarantine_dir(rng: random.Random) -> Case:
    target = rng.choice(["{dir}/tx.csv", "{dir}/tx.csv/q", "/proc/custseq-q", "", "/dev/null"])
    args = ("validate", "{dir}/tx.csv", "--quarantine-dir", target)
    return Case("option_quarantine_dir", {"tx.csv": Rows.shop(rng).csv().encode()}, args, data=("tx.csv",),
                says=("quarantine",))  # fmt: skip


def option_data_path(rng: random.Random) -> Case:
    target = rng.choice(["{dir}/missing.csv", "{dir}", "{dir}/*.csv", "", "/dev/null", "{dir}/sub/"])
    args = ("validate", target, "--quarantine-dir", "{dir}/q")
    says = ("exist", "folder", "format", "path")
    return Case("option_data_path", {"sub/x.csv": b"customer_id,ts,amount\n"}, args, says=says)


# --- the model commands, on a tiny shop --------------------------------------------------------------------------

TINY_TOML = """
[model]
pretraining = false
[model.encoder]
d_model = 8
n_heads = 2
n_layers = 1
d_ff = 16
max_events = 8
[model.finetune_training]
epochs = 1
batch_size = 64
[report]
enabled = false
"""


def _year_of_shop(rng: random.Random) -> Rows:
    out = []
    for c in range(30):
        day = rng.randrange(40)
        while day < 360:
            ts = FIRST_DAY + dt.timedelta(days=day)
            out.append([f"c{c:03d}", f"{ts:%Y-%m-%d}", f"{rng.uniform(1, 90):.2f}", f"p{rng.randrange(5)}"])
            day += rng.randrange(3, 40)
    return Rows(out)


def predict_options(rng: random.Random) -> Case:
    """Options ``predict`` must refuse before it trains."""
    opts = rng.choice([("--horizon", "0d"), ("--horizon", "-5d"), ("--horizon", "100000y"), ("--horizon", "soon"),
                       ("--horizon", ""), ("--as-of", "9999-12-31"), ("--as-of", "1999-01-01"),
                       ("--out", "{dir}/tx.csv/out"), ("--out", "/proc/custseq-out"), ("--out", "{dir}/tx.csv"),
                       ("--seed", "-1"), ("--catalogue", "nope"), ("--products", "{dir}/missing.csv")])  # fmt: skip
    out = () if opts[0] == "--out" else ("--out", "{dir}/out")
    args = ("predict", "{dir}/tx.csv", "--config", "{dir}/tiny.toml", *out, *opts)
    files = {"tx.csv": _year_of_shop(rng).csv().encode(), "tiny.toml": TINY_TOML.encode()}
    return Case("predict_options", files, args, data=("tx.csv",))


def prepare_options(rng: random.Random) -> Case:
    opts = rng.choice([("--token", "order"), ("--token", "basket"), ("--windows", "0"), ("--windows", "-1"),
                       ("--stride", "0"), ("--max-events", "0"), ("--horizon", "100000y"),
                       ("--as-of", "9999-12-31"), ("--out", "{dir}/tx.csv/out")])  # fmt: skip
    out = () if opts[0] == "--out" else ("--out", "{dir}/out")
    args = ("prepare", "{dir}/tx.csv", *out, *opts)
    return Case("prepare_options", {"tx.csv": _year_of_shop(rng).csv().encode()}, args, data=("tx.csv",))


def predict_messy(rng: random.Random) -> Case:
    """A whole ``predict`` on a year of a small shop spoiled a little: it runs, every row accounted for."""
    rows = _year_of_shop(rng)
    rows.set(rng, rng.randrange(4), ["", "NULL", "=1+1", "junk", "-3", "1e30"], share=0.03)
    text = _insert(rng, rows.lines(), ["", "c001,2023-02-02", "# exported by ERP"])
    args = ("predict", "{dir}/tx.csv", "--config", "{dir}/tiny.toml", "--out", "{dir}/out", "--horizon", "60d")
    return Case("predict_messy", {"tx.csv": text.encode(), "tiny.toml": TINY_TOML.encode()}, args, data=("tx.csv",))


# --- the corpus --------------------------------------------------------------------------------------------------

Kind = Callable[[random.Random], Case]
VALIDATE_KINDS: tuple[Kind, ...] = (
    latin1, utf16, utf8_bom, cp1252_quotes, delimiter, comma_decimal_semicolon, quote_left_open, quote_open_last_line,
    quoted_newline, ragged, blank_lines, comment_lines, line_endings, nul_bytes, control_chars, no_trailing_newline,
    whitespace_aligned, single_column, amounts, dates, dates_one_format, ids, products, duplicate_rows, extra_columns,
    many_columns, long_line, duplicate_header, missing_column, odd_header, mapped_columns, empty_file, header_only,
    binary_junk, gzip_ok, gzip_truncated, not_gzip, parquet_named_csv, wrong_extension, several_files, mixed_formats,
    parquet_types, parquet_broken, duckdb_table, customers_table, events_table, config_wrong_type, config_unknown_key,
    config_ts_format, config_deep, config_syntax, config_path, option_as_of, option_amount_limit, option_duplicates,
    option_quarantine_dir, option_data_path,
)  # fmt: skip
MODEL_KINDS: tuple[Kind, ...] = (predict_options, prepare_options)
WHOLE_RUN_KINDS: tuple[Kind, ...] = (predict_messy,)


def cases(kinds: tuple[Kind, ...], seed: int, per_kind: int = 1) -> Iterator[Case]:
    """``per_kind`` cases of every kind, from ``seed``: the same seed gives the same files and options."""
    for kind in kinds:
        for i in range(per_kind):
            case = kind(random.Random(f"{seed}/{kind.__name__}/{i}"))
            yield Case(f"{case.name}-{seed}.{i}", case.files, case.args, case.data, case.delimiter, case.encoding,
                       case.says)  # fmt: skip


def independent_count(case: Case, folder: Path) -> int | None:
    """The case's transactions records without custseq: :mod:`csv` with the dialect it was written in, or the
    Parquet row count; None when that reader cannot read them either."""
    if not case.data:
        return None
    total = 0
    for name in case.data:
        path = folder / name
        try:
            if name.lower().endswith((".parquet", ".pq")):
                total += pq.ParquetFile(path).metadata.num_rows
                continue
            raw = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
            text = raw.decode(case.encoding)
            records = _records(text, case.delimiter)
        except (OSError, EOFError, UnicodeDecodeError, csv.Error, pa.ArrowException, gzip.BadGzipFile):
            return None
        total += max(records - 1, 0)
    return total


def _records(text: str, delimiter: str) -> int:
    """Records of a CSV text: quoted fields may hold delimiters and line breaks; where a quote is left open, the
    quote is taken as a character (as a reader must, to read the file at all) and every line is a record."""
    previous = csv.field_size_limit(2**31 - 1)
    try:
        try:
            return len(list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)))
        except csv.Error:
            return len(list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=csv.QUOTE_NONE)))
    finally:
        csv.field_size_limit(previous)


def describe(case: Case) -> str:
    """The case as a user would type it, for a report."""
    return json.dumps({"case": case.name, "args": list(case.args), "files": {n: len(c) for n, c in case.files.items()}})
