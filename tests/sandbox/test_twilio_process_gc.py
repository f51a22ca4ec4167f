"""The sandbox process keeps its records out of later full collections (sandbox/twilio_cli.py).

Run in a child interpreter: freezing objects in the test process would keep
them from every later test's collections.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import asyncio, gc
    from sandbox.twilio_cli import keep_records_out_of_full_collections

    async def main():
        records = [{"To": "+33600000000", "n": [n]} for n in range(20_000)]  # what the sandbox keeps
        freezer = asyncio.create_task(keep_records_out_of_full_collections(check_s=0.01))
        await asyncio.sleep(0)
        walked_before = len(gc.get_objects())
        gc.collect()  # a full collection, as the growing heap triggers them
        for _ in range(500):  # until the freezer's next check, at most 5 s
            if gc.get_freeze_count():
                break
            await asyncio.sleep(0.01)
        freezer.cancel()
        print(walked_before, len(gc.get_objects()), gc.get_freeze_count(), len(records))

    asyncio.run(main())
    """
)


def test_after_a_full_collection_what_survived_is_no_longer_walked() -> None:
    child = [sys.executable, "-c", CHILD]
    out = subprocess.run(child, capture_output=True, text=True, timeout=60, check=True)
    walked_before, walked_after, frozen, kept = map(int, out.stdout.split())
    assert kept == 20_000
    assert walked_before > 40_000  # the records' dicts and lists were walked by every full collection
    assert frozen > 40_000 and walked_after < 5_000  # now frozen: the next one walks only what is new
