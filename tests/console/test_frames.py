"""A console feed's batch travels as one WebSocket frame, and reads back as the messages sent."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dispatcher.web.console.frames import BATCH, frame_of, messages_in

MESSAGES = st.lists(
    st.one_of(
        st.builds(lambda i: {"type": "alert", "alert": {"id": i}}, st.sampled_from(["a1", "a2", "a3"])),
        st.builds(lambda d: {"type": "health", "device_id": d, "flag": "offline", "raised": True}, st.text()),
        st.just({"type": "visit"}),
        st.just({"type": "events"}),
    ),
    max_size=20,
)


@given(MESSAGES)
def test_a_frame_reads_back_as_the_messages_framed_in_order(messages: list[dict[str, Any]]) -> None:
    frame = frame_of(messages)
    if not messages:
        assert frame is None, "an empty batch must not cost a frame"
        return
    assert frame is not None
    # As the page and the clients get it: through JSON.
    assert messages_in(json.loads(json.dumps(frame))) == messages


def test_a_lone_message_travels_as_itself_and_several_as_one_batch() -> None:
    alert = {"type": "alert", "alert": {"id": "a1"}}
    visit = {"type": "visit"}
    assert frame_of([alert]) == alert
    assert frame_of([alert, visit]) == {"type": BATCH, "messages": [alert, visit]}
