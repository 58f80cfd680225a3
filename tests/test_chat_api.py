"""`[model] api = "chat"`: how the story travels as chat messages, and how the reply is read back
(engine/remote/completions.py, session.py). The real server plays in tests/test_remote_backend.py."""

from __future__ import annotations

from simularity_tui.engine import GenerationParams, SamplingParams
from simularity_tui.engine.remote.completions import CONTINUE_ONLY, chat_body
from simularity_tui.engine.remote.session import _Reply, _without_echo

PARAMS = GenerationParams(sampling=SamplingParams(seed=3), max_tokens=24, grammar='root ::= "x"')


def test_the_pinned_block_is_the_system_message_and_the_story_goes_on_as_the_assistant() -> None:
    body = chat_body("m", "PINNED", "Ash (20:02): Hello.\n[stage:", PARAMS, 3, 24, grammar=True, prefill=True)
    assert body["messages"] == [
        {"role": "system", "content": "PINNED"},
        {"role": "assistant", "content": "Ash (20:02): Hello.\n[stage:"},
    ]
    assert body["grammar"] == 'root ::= "x"' and body["stream"] is True and "prompt" not in body


def test_without_prefill_the_story_is_the_users_and_the_system_asks_for_its_continuation() -> None:
    body = chat_body("m", "PINNED", "Ash (20:02): Hello.\n[stage:", PARAMS, 3, 24, grammar=False, prefill=False)
    assert body["messages"] == [
        {"role": "system", "content": "PINNED" + CONTINUE_ONLY},
        {"role": "user", "content": "Ash (20:02): Hello.\n[stage:"},
    ]
    assert "grammar" not in body


def test_the_story_a_server_repeats_before_its_reply_is_taken_off_across_chunks() -> None:
    reply = _Reply(echo="Ash: Hi.\n[stage:")
    pieces = ["Ash: H", "i.\n[sta", "ge: none", "]\n"]  # llama-server: the message, then the reply
    assert [_without_echo(piece, reply) for piece in pieces] == ["", "", " none", "]\n"]
    # A server that does not repeat it: its reply whole, from the first piece on.
    reply = _Reply(echo="Ash: Hi.\n[stage:")
    assert [_without_echo(piece, reply) for piece in (" none", "]\n")] == [" none", "]\n"]
