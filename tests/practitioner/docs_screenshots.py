"""Regenerate the screenshots of docs/practitioner.md from real Chromium at 390×844.

    .venv/bin/python -m tests.practitioner.docs_screenshots

Runs the page's browser tests (the whole system, real Chromium) and copies the
screenshots they take from test-artifacts/ to docs/practitioner/.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "practitioner"
SCREENS = (
    "practitioner-declare",
    "practitioner-commune",
    "practitioner-timer",
    "practitioner-check",
    "practitioner-devices",
    "practitioner-alerts",
    "practitioner-report",
    "console-open-visits",
)


def main() -> None:
    test = ROOT / "tests" / "practitioner" / "test_page_browser.py"
    subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider"], check=True, cwd=ROOT
    )
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in SCREENS:
        shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")
        print(f"docs/practitioner/{name}.png")


if __name__ == "__main__":
    main()
