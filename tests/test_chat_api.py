"""`[model] api = "chat"`: how the story travels as chat messages, and how the reply is read back
(engine/remote/completions.py, session.py). The real server plays in tests/test_remote_backend.py."""

from __future__ import annotations

from simularity_tui.engine import GenerationParams, SamplingParams
from simularity_tui.engine.remote.completions import CONTINUE_ONLY, GO_ON, chat_body
from simularity_tui.engine.remote.session import _Reply, _without_echo

PARAMS = GenerationParams(sampling=SamplingParams(seed=3), max_tokens=24, grammar='root ::= "x"')


def test_the_pinned_block_is_the_system_message_and_the_story_goes_on_as_the_assistant() -> None:
    body = chat_body("m", "PINNED", "Ash (20:02): Hello.\n[stage:", PARAMS, 3, 24, grammar=True, prefill=True)
    assert body["messages"] == [
        {"role": "system", "content": "PINNED"},
        {"role": "user", "content": GO_ON},  # Gemma-style templates put the system text in the first user turn
        {"role": "assistant", "content": "Ash (20:02): Hello.\n[stage:"},
    ]
    assert body["grammar"] == 'root ::= "x"' and body["stream"] is True and "prompt" not in body


def test_without_prefill_the_story_is_the_users_and_the_system_asks_for_its_continuation() -> None:
    body = chat_body("m", "PINNED", "Ash (20:02): Hello.\n[stage:", PARAMS, 3, 24, grammar=False, prefill=False)
    assert body["messages"] == [
        {"role": "system", "content": "PINNED" + CONTINUE_ONLY},
        {"role": "user", "content": "Ash (20:02): Hello.\n[stage:"},
    ]
    # A strict cloud API refuses what it does not know: the OpenAI fields alone (samplers left at rest).
    assert set(body) == {"model", "messages", "stream", "stream_options", "max_tokens", "temperature", "top_p", "seed"}


def test_the_story_a_server_repeats_before_its_reply_is_taken_off_across_chunks() -> None:
    reply = _Reply(echo="Ash: Hi.\n[stage:")
    pieces = ["Ash: H", "i.\n[sta", "ge: none", "]\n"]  # llama-server: the message, then the reply
    assert [_without_echo(piece, reply) for piece in pieces] == ["", "", " none", "]\n"]
    # A server that does not repeat it: its reply whole, from the first piece on, even where it
    # begins as the story did (held back only until it does not).
    reply = _Reply(echo="Ash: Hi.\n[stage:")
    assert [_without_echo(piece, reply) for piece in (" none", "]\n")] == [" none", "]\n"]
    reply = _Reply(echo="Mira (20:00): Hello.\n[stage: none]\n")
    pieces = ["Mira", " (", "20", ":", "01", "): Hi"]
    assert "".join(_without_echo(piece, reply) for piece in pieces) == "Mira (20:01): Hi"
    # The story whole in the first piece, with the reply's first token after it.
    reply = _Reply(echo="Ash: Hi.\n[stage:")
    assert _without_echo("Ash: Hi.\n[stage: none", reply) == " none" and _without_echo("]", reply) == "]"
