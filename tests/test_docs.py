"""The README shows the report's first screen, and the picture is there."""

from __future__ import annotations

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
