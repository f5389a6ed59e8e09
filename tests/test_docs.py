"""The README shows the report's first screen, and the picture is there."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = "docs/report-first-screen.png"


def test_readme_shows_the_committed_report_screenshot():
    assert f"]({SCREENSHOT})" in (ROOT / "README.md").read_text()
    picture = (ROOT / SCREENSHOT).read_bytes()
    assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 20_000  # a real screenshot, not a stub
