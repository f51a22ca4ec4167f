"""Regenerate the screenshots of docs/responder.md from real Chromium at 390×844.

    .venv/bin/python -m tests.responder.docs_screenshots

Runs the page's browser tests (a real alert, its SMS link) and copies their
screenshots from test-artifacts/ to docs/responder/.
"""

from __future__ import annotations

from tests.practitioner.docs_screenshots import ROOT, regenerate

SCREENS = ("responder-open", "responder-acknowledged", "responder-live")

if __name__ == "__main__":
    regenerate(
        ROOT / "tests" / "responder" / "test_responder_browser.py", ROOT / "docs" / "responder", SCREENS
    )
