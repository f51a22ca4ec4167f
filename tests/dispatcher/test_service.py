"""Process-level set-up of ``vigie serve``: the open-file limit fits the provider pool."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs in a child: lowering a hard limit cannot be undone in the test process.
CHILD = """
import json, logging, resource, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from dispatcher.service import fit_open_file_limit
soft, hard = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
returned = fit_open_file_limit(int(sys.argv[3]))
print(json.dumps({"returned": returned, "now": list(resource.getrlimit(resource.RLIMIT_NOFILE))}))
"""


def _fit(soft: int, hard: int, needed: int) -> tuple[dict[str, object], str]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(soft), str(hard), str(needed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout), done.stderr


def test_soft_limit_is_raised_to_fit_the_pool() -> None:
    result, log = _fit(soft=1024, hard=8192, needed=5024)
    assert result == {"returned": 5024, "now": [5024, 8192]}
    assert "LimitNOFILE" not in log


def test_a_hard_limit_too_low_is_used_whole_and_reported() -> None:
    result, log = _fit(soft=1024, hard=2048, needed=5024)
    assert result == {"returned": 2048, "now": [2048, 2048]}
    assert "augmentez LimitNOFILE" in log


def test_a_sufficient_limit_is_left_alone() -> None:
    result, _ = _fit(soft=6000, hard=8192, needed=5024)
    assert result == {"returned": 6000, "now": [6000, 8192]}
