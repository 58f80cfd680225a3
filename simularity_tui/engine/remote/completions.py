"""One streamed `POST /v1/completions` (or `/v1/chat/completions`): the request body, and the
server-sent events as chunks.

`[model] api = "chat"` is for servers that offer chat completions only (the cloud APIs): the
pinned block goes as the system message, and the story as one assistant message the model goes
on with (prefill) where the server continues a last assistant message (llama-server does), after
a constant user turn (templates such as Gemma's put the system text into the first user turn, and
render none without one); else as a user message, with the system message asking for the text's
continuation alone. Either way the reply is the continuation of the story's text, read as the
line format like any other. A chat API without prefill is taken for a strict cloud API, which
refuses fields it does not know: it is sent the OpenAI fields alone, and the other samplers only
where the player turned them on.

The body of a completion (or of a chat on llama-server) carries the fields every OpenAI-compatible
server knows (prompt, max_tokens, temperature, top_p, stop, seed, stream) and those the llama.cpp
family adds (top_k, min_p, repeat_penalty, repeat_last_n, grammar, cache_prompt); vLLM's name for
the repeat penalty goes too. The completion servers ignore fields they do not know, so one body
fits them all. The other samplers (penalties, typical-p, DRY, XTC, mirostat) go under
llama-server's names, and only when they are on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..config import GenerationParams, SamplingParams
from .errors import RemoteBackendError, garbage, sample, server_message, status_failure, transport_failure
from .http import Calls

PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"
DOING = "writing a reply"
# Said to a chat model that cannot be given the story's beginning to go on with (no prefill).
GO_ON = "Go on with the story."  # the user turn before the prefilled story
CONTINUE_ONLY = (
    "\n\nThe user's message is the story so far, in the format above. Continue it from exactly where it "
    "stops, in the same format: write only what comes next, without repeating any of it."
)


@dataclass(frozen=True)
class Chunk:
    text: str
    finish_reason: str | None = None
    stop_string: str | None = None  # vLLM says which stop string ended the reply; others do not
    evaluated: int | None = None  # prompt tokens the server read (not from its cache), where it says


class GrammarRefused(Exception):
    """The server turned the request down because of its `grammar` field."""


def completion_body(
    model: str,
    prompt: str,
    params: GenerationParams,
    seed: int,
    max_tokens: int,
    *,
    grammar: bool,
    slot: int | None = None,
) -> dict[str, Any]:
    return {"prompt": prompt, **_request_fields(model, params, seed, max_tokens, grammar=grammar, slot=slot)}


def chat_body(
    model: str,
    system: str,
    story: str,
    params: GenerationParams,
    seed: int,
    max_tokens: int,
    *,
    grammar: bool,
    slot: int | None = None,
    prefill: bool,
) -> dict[str, Any]:
    """The pinned block as the system message and the story after it: the model continues the story
    as an assistant message (`prefill`), or is asked to go on with it as a user message."""
    if prefill:
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": GO_ON},
            {"role": "assistant", "content": story},
        ]
        return {"messages": messages, **_request_fields(model, params, seed, max_tokens, grammar=grammar, slot=slot)}
    messages = [{"role": "system", "content": system + CONTINUE_ONLY}, {"role": "user", "content": story}]
    return {"messages": messages, **_openai_fields(model, params, seed, max_tokens)}


def _openai_fields(model: str, params: GenerationParams, seed: int, max_tokens: int) -> dict[str, Any]:
    """What a strict OpenAI-compatible API accepts: its own fields, and the other samplers only
    where the player turned them on (a server that refuses them then says so in words)."""
    sampling = params.sampling
    body: dict[str, Any] = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},  # vLLM/SGLang: how much of the prompt was cached
        "max_tokens": max_tokens,
        "temperature": max(0.0, sampling.temperature),  # 0: greedy, as on the in-process engine
        "top_p": sampling.top_p,
        "seed": seed,
        **extra_sampling_fields(sampling),
    }
    if params.stop:
        body["stop"] = list(params.stop)
    return body


def _request_fields(
    model: str, params: GenerationParams, seed: int, max_tokens: int, *, grammar: bool, slot: int | None
) -> dict[str, Any]:
    """The OpenAI fields, and those the llama.cpp family (and vLLM) add."""
    sampling = params.sampling
    body = _openai_fields(model, params, seed, max_tokens)
    body.update(
        top_k=sampling.top_k,
        min_p=sampling.min_p,
        repeat_penalty=sampling.repeat_penalty,
        repetition_penalty=sampling.repeat_penalty,  # vLLM's name
        repeat_last_n=sampling.repeat_last_n,
        cache_prompt=True,  # llama-server: reuse the longest common prefix (its default, said anyway)
    )
    if grammar and params.grammar:
        body["grammar"] = params.grammar
    if slot is not None:
        body["id_slot"] = slot  # llama-server: the game's own slot
    return body


def extra_sampling_fields(sampling: SamplingParams) -> dict[str, Any]:
    """The samplers beyond the common ones, under llama-server's names; only those that are on, so a
    strict OpenAI server is not sent fields it does not know unless the player asked for them."""
    fields: dict[str, Any] = {}
    if sampling.frequency_penalty != 0.0:
        fields["frequency_penalty"] = sampling.frequency_penalty
    if sampling.presence_penalty != 0.0:
        fields["presence_penalty"] = sampling.presence_penalty
    if sampling.typical_p != 1.0:
        fields["typical_p"] = sampling.typical_p
    if sampling.dry_multiplier > 0.0:
        fields["dry_multiplier"] = sampling.dry_multiplier
        fields["dry_base"] = sampling.dry_base
        fields["dry_allowed_length"] = sampling.dry_allowed_length
        fields["dry_penalty_last_n"] = sampling.dry_penalty_last_n  # -1: the whole context, there too
        fields["dry_sequence_breakers"] = list(sampling.dry_sequence_breakers)
    if sampling.xtc_probability > 0.0:
        fields["xtc_probability"] = sampling.xtc_probability
        fields["xtc_threshold"] = sampling.xtc_threshold
    if sampling.mirostat:
        fields["mirostat"] = sampling.mirostat
        fields["mirostat_tau"] = sampling.mirostat_tau
        fields["mirostat_eta"] = sampling.mirostat_eta
    return fields


async def stream_completion(
    client: httpx.AsyncClient, calls: Calls, body: dict[str, Any]
) -> AsyncGenerator[Chunk, None]:
    """The reply's chunks (of a chat completion where `body` has messages); every failure
    (transport, status, shape, an unfinished stream) is a `RemoteBackendError`. Closing the
    iteration closes the stream, which is how a reply is cancelled."""
    url = calls.url
    path = CHAT_PATH if "messages" in body else PATH
    try:
        async with client.stream("POST", path, json=body) as response:
            if response.status_code >= 400:
                said = (await response.aread()).decode("utf-8", errors="replace")
                if "grammar" in body and response.status_code in (400, 422, 500, 501) and "grammar" in said.lower():
                    raise GrammarRefused(server_message(said))
                raise status_failure(response.status_code, said, url, path, DOING)
            if response.headers.get("content-type", "").startswith("application/json"):
                yield _chunk(await response.aread(), url)  # a server that answered all at once
                return
            finished, seen, sample = False, False, ""
            async for data in _event_data(response.aiter_lines()):
                if data is None:
                    continue
                if isinstance(data, tuple):  # a line that is not server-sent events: kept for the error
                    sample = sample or data[0]
                    continue
                if data.strip() == "[DONE]":
                    finished = True
                    break
                chunk = _chunk(data, url)
                seen = True
                finished = finished or chunk.finish_reason is not None
                yield chunk
            if not finished:
                raise _unfinished(url, seen, sample)
    except httpx.HTTPError as error:
        raise transport_failure(error, url, DOING, calls.config.read_timeout) from None


async def _event_data(lines: AsyncIterator[str]) -> AsyncIterator[str | tuple[str] | None]:
    """The data of each server-sent event; comments (keep-alive pings) and other fields skipped.

    A line that is no SSE field at all comes back as a 1-tuple, so garbage can be shown."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            yield None
            continue
        field, colon, value = line.partition(":")
        if not colon or field not in ("data", "event", "id", "retry"):
            yield (line,)
            continue
        if field == "data":
            data.append(value.removeprefix(" "))
    if data:
        yield "\n".join(data)


def _chunk(data: str | bytes, url: str) -> Chunk:
    try:
        event = json.loads(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python reads: garbage all the same
        raise garbage(url, DOING, data if isinstance(data, str) else data.decode("utf-8", "replace")) from None
    if isinstance(event, dict) and "error" in event:  # llama-server and vLLM report failures in the stream
        raise RemoteBackendError(
            f"The model server at {url} failed while {DOING}: {server_message(_dumped(event))}",
            hint="Check the server's log; nothing was added to the story.",
        )
    choices = event.get("choices") if isinstance(event, dict) else None
    if not isinstance(choices, list):
        raise garbage(url, DOING, sample(data))
    evaluated = _evaluated(event)
    if not choices:  # a usage-only chunk at the end
        return Chunk("", evaluated=evaluated)
    choice = choices[0]
    text = _choice_text(choice) if isinstance(choice, dict) else None
    if not isinstance(text, str | None):
        raise garbage(url, DOING, sample(data))
    finish = choice.get("finish_reason")
    stop = choice.get("stop_reason")
    return Chunk(
        text or "",
        finish_reason=finish if isinstance(finish, str) else None,
        stop_string=stop if isinstance(stop, str) else None,
        evaluated=evaluated,
    )


def _choice_text(choice: dict[str, Any]) -> object:
    """A completion's `text`, a chat chunk's `delta.content`, or a whole chat answer's `message.content`."""
    if "text" in choice:
        return choice["text"]
    for key in ("delta", "message"):
        part = choice.get(key)
        if isinstance(part, dict):
            return part.get("content")
    return None


def _dumped(event: object) -> str:
    try:
        return json.dumps(event)
    except RecursionError:
        return sample(event)


def _evaluated(event: dict[str, Any]) -> int | None:
    """llama-server's `timings.prompt_n`, or OpenAI usage: prompt tokens minus those cached."""
    timings = event.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("prompt_n"), int):
        return int(timings["prompt_n"])
    usage = event.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        if isinstance(cached, int):
            return int(usage["prompt_tokens"]) - cached
    return None


def _unfinished(url: str, seen: bool, sample: str) -> RemoteBackendError:
    if sample and not seen:
        return garbage(url, DOING, sample)
    if seen:
        return RemoteBackendError(
            f"The model server at {url} stopped in the middle of a reply (the stream ended unfinished).",
            hint="Check the server's log; nothing was added to the story. Try again once it is back.",
        )
    return RemoteBackendError(
        f"The model server at {url} ended its answer without writing anything.",
        hint="If the story is long, the prompt may not fit the server's context: set n_ctx to at most the "
        "server's (--n-ctx, or [model] n_ctx in settings.toml). Its log says more.",
    )
