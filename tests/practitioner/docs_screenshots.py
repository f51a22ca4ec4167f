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


def regenerate(test: Path, docs: Path, screens: tuple[str, ...]) -> None:
    """Run ``test`` (it saves its screenshots in test-artifacts/) and copy ``screens`` to ``docs``."""
    subprocess.run(
        [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider"], check=True, cwd=ROOT
    )
    docs.mkdir(parents=True, exist_ok=True)
    for name in screens:
        shutil.copyfile(ARTIFACTS / f"{name}.png", docs / f"{name}.png")
        print(f"{docs.relative_to(ROOT)}/{name}.png")


def main() -> None:
    regenerate(ROOT / "tests" / "practitioner" / "test_page_browser.py", DOCS, SCREENS)


if __name__ == "__main__":
    main()
