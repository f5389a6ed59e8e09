"""Currencies: the active ISO 4217 codes (the default for the unknown-currency rule), the currency the data's
amounts are in, where the data say it, and the refusal to sum amounts of several currencies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import duckdb

from custseq.errors import SchemaError

ISO_4217 = frozenset(
    [
        "AED",
        "AFN",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BTN",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CDF",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ERN",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "IRR",
        "ISK",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KPW",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SDG",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SYP",
        "SZL",
        "THB",
        "TJS",
        "TMT",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XCG",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
        "ZWG",
    ]
)


# Codes common enough to be read from a column's name ("amount_eur", "Revenue (GBP)"); rarer ISO codes are
# ordinary words too often (ALL, CUP, TOP, TRY, MAD) to be read from names.
NAMED_CODES = frozenset(
    [
        "EUR",
        "USD",
        "GBP",
        "JPY",
        "CHF",
        "CAD",
        "AUD",
        "NZD",
        "CNY",
        "HKD",
        "SGD",
        "INR",
        "KRW",
        "SEK",
        "NOK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "BRL",
        "MXN",
        "ZAR",
    ]
)


@dataclass(frozen=True)
class DataCurrency:
    """The currency the amounts are in, as far as the data say (``code`` None: they do not say, or disagree)."""

    code: str | None
    note: str | None  # how it was found, or why none could be named


def currency_of_data(
    con: duckdb.DuckDBPyConnection, clean: str, has_currency: bool, amount_sources: tuple[str, ...], before: Any
) -> DataCurrency:
    """The data's currency: the one code of the ``currency`` column on rows before ``before`` (the latest
    cutoff), else a common ISO code in the amount column's name; several codes give a note and no currency."""
    if has_currency:
        shares = con.execute(
            f"SELECT upper(currency) AS code, count(*) / sum(count(*)) OVER () AS share FROM {clean} "
            "WHERE ts < ? AND currency IS NOT NULL GROUP BY 1 ORDER BY share DESC, code",
            [before],
        ).fetchall()
        if len(shares) == 1:
            return DataCurrency(shares[0][0], f"amounts are in {shares[0][0]} (the currency column)")
        if len(shares) > 1:
            listed = ", ".join(f"{code} {share:.0%}" for code, share in shares[:4])
            return DataCurrency(
                None,
                f"amounts in several currencies ({listed}) are summed as they are: convert them to one currency "
                "first, and name it with [profit] currency",
            )
    for source in amount_sources:
        codes = {w.upper() for w in re.findall(r"[A-Za-z]+", source)} & NAMED_CODES
        if len(codes) == 1:
            code = codes.pop()
            return DataCurrency(code, f"amounts are in {code} (from the column name {source!r})")
    return DataCurrency(None, None)


def refuse_mixed_currencies(
    con: duckdb.DuckDBPyConnection, clean: str, before: Any, mode: str, *, shown: int = 4
) -> None:
    """Refuse a clean transactions table whose amounts (on rows before ``before``, all rows when None) are in
    several currencies, unless ``mode`` is ``"allow"``: custseq sums amounts as they are and converts nothing.

    Raises
    ------
    SchemaError
        Naming the currencies with their shares of the rows, and the two ways out.
    """
    if mode == "allow":
        return
    where = "currency IS NOT NULL" + (" AND ts < $before" if before is not None else "")
    shares = con.execute(
        f"SELECT upper(currency) AS code, count(*) / sum(count(*)) OVER () AS share FROM {clean} WHERE {where} "
        "GROUP BY 1 ORDER BY share DESC, code",
        {"before": before} if before is not None else {},
    ).fetchall()
    if len(shares) < 2:
        return
    listed = ", ".join(f"{code} {share:.0%}" for code, share in shares[:shown])
    more = f" and {len(shares) - shown} more" if len(shares) > shown else ""
    raise SchemaError(
        f"transactions hold amounts in {len(shares)} currencies ({listed}{more}), which custseq would sum as they "
        "are; convert the amounts to one currency first (and name it with [profit] currency), or set "
        '[validation] mixed_currencies = "allow" to sum them anyway'
    )
