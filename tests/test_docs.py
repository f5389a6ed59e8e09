"""The README shows the report's first screen, and what it says about settings, column roles and installing matches
the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = "docs/report-first-screen.png"


def test_readme_shows_the_committed_report_screenshot():
    assert f"]({SCREENSHOT})" in (ROOT / "README.md").read_text()
    picture = (ROOT / SCREENSHOT).read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 20_000  # a real screenshot, not a stub


def test_the_settings_reference_is_generated_from_the_code_and_linked():
    from custseq.config.reference import settings_markdown

    written = (ROOT / "docs" / "settings.md").read_text()
    assert written == settings_markdown(), "run: python -m custseq.config.reference > docs/settings.md"
    assert "](docs/settings.md)" in (ROOT / "README.md").read_text()
    assert "| `save_rate` | `float` | `0.3` |" in written and "## [model.finetune_training]" in written


def test_the_readme_lists_every_column_role_as_the_code_defines_it():
    from custseq.schema import TABLES
    from custseq.validate.roles import MEANINGS, SAMPLE_ROWS, roles_markdown

    assert {t: list(m) for t, m in MEANINGS.items()} == {t: list(spec.names) for t, spec in TABLES.items()}
    readme = (ROOT / "README.md").read_text()
    assert roles_markdown() in readme, "paste custseq.validate.roles.roles_markdown() into the README's Column roles"
    for name, spec in TABLES.items():
        section = readme.split(f"**{name}** (")[1].split("\n\n", 2)[1]  # the table under the table's heading
        assert [line.split("`")[1] for line in section.splitlines()[2:]] == list(spec.names)
    assert "custseq columns" in readme and f"the first {SAMPLE_ROWS:,} rows only" in readme


def test_the_readme_names_the_products_columns_custseq_reads():
    from custseq.scoring.products import EXCLUDE_COLUMN, ID_COLUMNS, NAME_COLUMNS

    products = (ROOT / "README.md").read_text().split("**products** (")[1].split("\n\n", 2)[1]
    rows = products.splitlines()[2:]
    assert [re.findall(r"`(\w+)`", row) for row in rows] == [list(ID_COLUMNS), list(NAME_COLUMNS), [EXCLUDE_COLUMN]]


def test_the_install_section_pins_the_torch_the_makefile_installs():
    pin = re.search(r"pip install --quiet (torch==[\d.]+)", (ROOT / "Makefile").read_text())
    assert pin
    install = (ROOT / "README.md").read_text().split("## Install\n")[1].split("\n## ")[0]
    assert f"pip install {pin.group(1)} " in install and "pip install dist/custseq-*.whl" in install
