"""The settings reference (docs/settings.md), generated from the config dataclasses so that it cannot drift.

Each section of a config file is a field of :class:`~custseq.config.RunConfig`; nested dataclasses (e.g.
``[model.finetune]``) get their own table. A setting's description is the comment on its line in the source
(or on the lines just above it), its default the dataclass default.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from typing import Any

from custseq.config.run import RunConfig
from custseq.schema import CUSTOMERS, EVENTS, TRANSACTIONS

_FIELD = re.compile(r"^\s+(\w+)\s*:")
HEADER = """# custseq settings

Every setting of a run, with its default. Put them in a TOML (or JSON) file, one section per table below, and
pass it with `--config FILE` (options on the command line override it); in Python, build the dataclasses
(`RunConfig(window=WindowConfig(horizon_days=30))`) or read a file with `custseq.config.load_config`.

```toml
[window]
horizon_days = 30

[profit]
contact_cost = 0.5
save_rate = 0.2
```

This page is generated from the code (`python -m custseq.config.reference > docs/settings.md`); a test keeps
it current.
"""


def settings_markdown() -> str:
    """docs/settings.md: the column roles of each input table, then one table per config section, every setting
    with its type, default and meaning."""
    parts = [HEADER, _column_roles()]
    for name, cls in _sections(RunConfig, ""):
        parts.append(_section(name, cls))
    return "\n".join(parts)


COLUMNS_HEADER = """## Column roles

What custseq reads from each table. A column whose name (lower case, without spaces, dashes or underscores)
is one of the "detected names" is mapped to its role by itself; map any other with `--column ROLE=COLUMN`
(`--column customers.ROLE=COLUMN` and `events.ROLE=COLUMN` for the other tables) or, in Python,
`RunConfig(columns=ColumnsConfig(transactions={"customer_id": "household_id"}, customers={...}))`. Columns
without a role are kept as extra attributes when their type allows.
"""


def _column_roles() -> str:
    parts = [COLUMNS_HEADER]
    for spec in (TRANSACTIONS, CUSTOMERS, EVENTS):
        rows = [
            f"| `{c.name}` | {'yes' if c.required else 'no'} | {c.kind.value} | {', '.join(c.aliases)} |"
            for c in spec.columns
        ]
        flag = "" if spec.name == "transactions" else f" (`--{spec.name} FILE`)"
        parts.append(
            f"### {spec.name}{flag}\n\n| role | required | kind | detected names |\n|---|---|---|---|\n"
            + "\n".join(rows)
            + "\n"
        )
    return "\n".join(parts)


def _sections(cls: type, prefix: str) -> list[tuple[str, type]]:
    out: list[tuple[str, type]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            name = f"{prefix}{f.name}"
            out.append((name, kind))
            out += _sections(kind, name + ".")
    return out


def _section(name: str, cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    summary = doc.split("\n\n")[0].replace("\n", " ")
    comments = _comments(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        rows.append(f"| `{f.name}` | {_type(hints[f.name])} | {_default(f)} | {comments.get(f.name, '')} |")
    table = "\n".join(["| setting | type | default | meaning |", "|---|---|---|---|", *rows]) if rows else ""
    return f"## [{name}]\n\n{summary}\n\n{table}\n"


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment: on its own line after ``#``, else the comment lines right above it."""
    lines = inspect.getsource(cls).splitlines()
    out: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("# ").strip())
            continue
        match = _FIELD.match(line)
        if match and "=" in line and not stripped.startswith(("def ", "return", "if ")):
            inline = line.split("#", 1)[1].strip() if "  # " in line else ""
            out[match.group(1)] = (inline or " ".join(above)).replace("|", "\\|")
        above = []
    return out


def _type(kind: Any) -> str:
    text = str(kind).replace("typing.", "")
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    return f"`{text}`".replace("|", "\\|")


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if value is None:
        return "unset"
    text = json.dumps(value, default=str) if not isinstance(value, str) else f'"{value}"'
    return f"`{text}`".replace("|", "\\|")


if __name__ == "__main__":
    import sys

    sys.stdout.write(settings_markdown())
