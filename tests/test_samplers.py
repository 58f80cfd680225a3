"""The samplers beyond top-k/top-p/min-p: frequency and presence penalties, typical-p, DRY, XTC and
mirostat, on the real model through llama.cpp's native chain; their settings, a pack's recommended
`[sampling]`, and the fields a model server is sent.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from simularity_tui.engine import GenerationParams, SamplingParams
from simularity_tui.engine.remote import RemoteConfig, RemoteSession
from simularity_tui.engine.remote.completions import completion_body
from simularity_tui.scenario import PackProblems, load_pack
from simularity_tui.scenario.loader import bundled_packs_dir
from simularity_tui.settings import SamplingSettings, Settings, load_settings, save_settings
from simularity_tui.toml_source import TomlProblems

from .test_remote_backend import Misbehaving, _events, a_working_server, misbehaving  # noqa: F401  (a fixture)

if TYPE_CHECKING:
    from simularity_tui.engine import LlamaSession

# A text that is nothing but one sentence again and again: left alone, the model goes on repeating it.
REPETITIVE = " ".join(["The cat sat on the mat."] * 30)  # no space at the end: the model's next token is its own
STORY = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
N_TOKENS = 120


async def generate(session: LlamaSession, text: str, sampling: SamplingParams, n: int = N_TOKENS) -> list[int]:
    """The reply's tokens (retokenized: the engine streams text)."""
    generation = session.generate(session.tokenize(text, add_bos=True), GenerationParams(sampling, n, heal=False))
    reply = "".join([piece async for piece in generation])
    await generation.result()
    return session.tokenize(reply)


def repeated_ngrams(tokens: list[int], n: int = 4) -> int:
    """How many of the reply's n-grams repeat one seen earlier in it."""
    counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return sum(count - 1 for count in counts.values())


# -- on the real model ----------------------------------------------------------------------------


async def test_dry_lowers_repeated_ngrams_against_the_same_seed(session: LlamaSession) -> None:
    """Greedy first: deterministic, and on this prompt it repeats the sentence to the end, so any DRY
    effect shows (measured over 60 tokens: 48 repeated 4-grams without DRY, 17 with). Then two seeds at
    the default temperature where the model, unchecked, falls into the loop (measured: 37 and 48 without
    DRY, 8 and 13 with it), summed so one lucky draw cannot decide it. DRY sees the prompt as already
    said, so even the reply's first sentence is pushed off the prompt's loop. 60 tokens, not 120: the
    loop shows as clearly, in half the time."""
    n = 60
    greedy_plain = repeated_ngrams(await generate(session, REPETITIVE, SamplingParams(temperature=0.0), n))
    greedy_dry = repeated_ngrams(
        await generate(session, REPETITIVE, SamplingParams(temperature=0.0, dry_multiplier=0.8), n)
    )
    print(f"greedy: {greedy_plain} repeated 4-grams without DRY, {greedy_dry} with")
    assert greedy_dry < greedy_plain
    plain_total = dry_total = 0
    for seed in (2, 3):
        plain = repeated_ngrams(await generate(session, REPETITIVE, SamplingParams(seed=seed), n))
        with_dry = repeated_ngrams(
            await generate(session, REPETITIVE, SamplingParams(seed=seed, dry_multiplier=0.8), n)
        )
        print(f"seed {seed}: {plain} repeated 4-grams without DRY, {with_dry} with")
        plain_total, dry_total = plain_total + plain, dry_total + with_dry
    assert dry_total < plain_total


async def test_xtc_and_mirostat_run_and_draw_otherwise_than_the_default(session: LlamaSession) -> None:
    default = await generate(session, STORY, SamplingParams(seed=1), n=40)
    # Probability 1: whenever two or more tokens are at least 10% likely, all but the least of them go.
    xtc = await generate(session, STORY, SamplingParams(seed=1, xtc_probability=1.0, xtc_threshold=0.1), n=40)
    mirostat = await generate(session, STORY, SamplingParams(seed=1, mirostat=2, mirostat_tau=5.0), n=40)
    assert xtc and mirostat
    assert xtc != default and mirostat != default


async def test_frequency_and_presence_penalties_change_the_output(session: LlamaSession) -> None:
    greedy = SamplingParams(temperature=0.0, repeat_penalty=1.0)
    plain = await generate(session, REPETITIVE, greedy, n=30)
    penalised = await generate(
        session, REPETITIVE, SamplingParams(temperature=0.0, repeat_penalty=1.0, frequency_penalty=1.0), n=30
    )
    assert penalised != plain
    # Not on the looping prompt: there every likely token is present, and one flat penalty on all of
    # them changes nothing between them. In a story, the words said once go down against the rest.
    drawn = await generate(session, STORY, SamplingParams(temperature=0.0, repeat_penalty=1.0), n=30)
    present = await generate(
        session, STORY, SamplingParams(temperature=0.0, repeat_penalty=1.0, presence_penalty=1.5), n=30
    )
    assert present != drawn
    typical = await generate(session, STORY, SamplingParams(seed=1, typical_p=0.2), n=30)
    assert typical  # typical-p runs


# -- settings and packs ---------------------------------------------------------------------------


def test_invalid_sampler_settings_are_reported_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "[sampling]\n"
        "dry_multiplier = -1.0\n"
        "xtc_threshold = 0.9\n"
        "mirostat = 3\n"
        "dry_sequence_breakers = ['\\n', '']\n"
        "frequency_penalty = 'lots'\n"
    )
    with pytest.raises(TomlProblems) as raised:
        load_settings(path)
    lines = sorted(str(raised.value).splitlines())
    print("\n".join(lines))
    assert lines[0] == f"{path}:2:1: sampling.dry_multiplier: Input should be greater than or equal to 0 (got -1.0)"
    assert lines[1] == f"{path}:3:1: sampling.xtc_threshold: Input should be less than or equal to 0.5 (got 0.9)"
    assert lines[2] == f"{path}:4:1: sampling.mirostat: Input should be less than or equal to 2 (got 3)"
    assert lines[3].startswith(f"{path}:5:") and "dry_sequence_breakers" in lines[3] and "at least 1" in lines[3]
    assert lines[4].startswith(f"{path}:6:1: sampling.frequency_penalty: Input should be a valid number")
    assert len(lines) == 5


def test_the_new_samplers_round_trip_through_settings(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(
        "[sampling]\n"
        "dry_multiplier = 0.8\n"
        'dry_sequence_breakers = ["\\n", "\\""]\n'
        "xtc_probability = 0.5\n"
        "mirostat = 2\n"
        "temperature = 0.8\n"  # the default, set on purpose: it stays the player's
    )
    settings = load_settings(path)
    params = settings.sampling_params()
    assert params.dry_multiplier == 0.8 and params.dry_sequence_breakers == ("\n", '"')
    assert params.xtc_probability == 0.5 and params.mirostat == 2
    save_settings(settings, path)
    assert "temperature = 0.8" in path.read_text()
    assert load_settings(path) == settings


def with_sampling(tmp_path: Path, table: str) -> Path:
    pack = tmp_path / "lighthouse"
    shutil.copytree(bundled_packs_dir() / "lighthouse", pack)
    scenario = pack / "scenario.toml"
    scenario.write_text(scenario.read_text() + "\n[sampling]\n" + table)
    return pack


def test_a_packs_preset_applies_where_the_player_set_nothing(tmp_path: Path) -> None:
    pack = load_pack(with_sampling(tmp_path, "temperature = 0.5\ndry_multiplier = 0.8\nmirostat = 2\n")).pack
    assert pack.sampling is not None and pack.sampling.top_k is None
    settings_file = tmp_path / "settings.toml"
    settings_file.write_text("[sampling]\ntemperature = 0.8\nmirostat = 0\n")  # both the defaults, but set
    params = load_settings(settings_file).sampling_params(pack.sampling)
    assert params.temperature == 0.8 and params.mirostat == 0  # the player's
    assert params.dry_multiplier == 0.8  # the pack's
    assert params.top_k == SamplingParams().top_k  # neither: the default
    assert Settings().sampling_params(pack.sampling).temperature == 0.5
    assert Settings().sampling_params(None) == SamplingParams()


KNOWN = ", ".join(sorted(set(SamplingSettings.model_fields) - {"seed"}))


def test_invalid_values_in_a_packs_sampling_are_reported_at_their_line(tmp_path: Path) -> None:
    pack = with_sampling(tmp_path, "dry_base = 0.5\ntypical_p = 0\nseed = 4\n")
    lines_before = (bundled_packs_dir() / "lighthouse" / "scenario.toml").read_text().count("\n")
    with pytest.raises(PackProblems) as raised:
        load_pack(pack)
    found = sorted(str(problem) for problem in raised.value.problems)
    scenario = pack / "scenario.toml"
    first = lines_before + 3  # the blank line, the table's header, then its keys
    assert found == sorted(
        [
            f"{scenario}:{first}:1: sampling.dry_base: Input should be greater than 1 (got 0.5)",
            f"{scenario}:{first + 1}:1: sampling.typical_p: Input should be greater than 0 (got 0)",
            f"{scenario}:{first + 2}:1: unknown key 'sampling.seed'; known keys: {KNOWN}",
        ]
    ), found


def test_every_sampling_setting_has_a_pack_preset_field() -> None:
    from simularity_tui.scenario.schema import SamplingPreset

    assert set(SamplingPreset.model_fields) == set(SamplingSettings.model_fields) - {"seed"}


# -- model servers ----------------------------------------------------------------------------------

EXTRA = {
    "frequency_penalty", "presence_penalty", "typical_p", "dry_multiplier", "dry_base", "dry_allowed_length",
    "dry_penalty_last_n", "dry_sequence_breakers", "xtc_probability", "xtc_threshold", "mirostat",
    "mirostat_tau", "mirostat_eta",
}  # fmt: skip
ALL_ON = SamplingParams(
    frequency_penalty=0.2, presence_penalty=0.3, typical_p=0.9, dry_multiplier=0.8, dry_base=2.0,
    dry_allowed_length=3, dry_penalty_last_n=512, dry_sequence_breakers=("\n",), xtc_probability=0.5,
    xtc_threshold=0.2, mirostat=2, mirostat_tau=4.0, mirostat_eta=0.2, seed=1,
)  # fmt: skip


def test_a_server_is_sent_the_samplers_only_when_they_are_on() -> None:
    plain = completion_body("m", "Hi", GenerationParams(SamplingParams()), 1, 8, grammar=False)
    assert not EXTRA & plain.keys()  # a strict OpenAI server is sent nothing new by default
    body = completion_body("m", "Hi", GenerationParams(ALL_ON), 1, 8, grammar=False)
    assert {key: body[key] for key in EXTRA} == {
        "frequency_penalty": 0.2, "presence_penalty": 0.3, "typical_p": 0.9, "dry_multiplier": 0.8,
        "dry_base": 2.0, "dry_allowed_length": 3, "dry_penalty_last_n": 512, "dry_sequence_breakers": ["\n"],
        "xtc_probability": 0.5, "xtc_threshold": 0.2, "mirostat": 2, "mirostat_tau": 4.0, "mirostat_eta": 0.2,
    }  # fmt: skip


async def test_the_request_a_server_receives_carries_them(misbehaving: tuple[str, Misbehaving]) -> None:  # noqa: F811
    url, behaviour = misbehaving
    a_working_server(behaviour)
    behaviour.routes["/v1/completions"] = lambda _body: _events("Hello", " there")
    session = RemoteSession.open_blocking(RemoteConfig(url))
    try:
        generation = session.generate([ord(c) for c in "Say:"], GenerationParams(ALL_ON, max_tokens=8, heal=False))
        assert "".join([piece async for piece in generation]) == "Hello there"
        await generation.result()
    finally:
        await session.close()
    sent = [body for path, body, _auth in behaviour.seen if path == "/v1/completions"]
    assert len(sent) == 1 and sent[0]["dry_sequence_breakers"] == ["\n"] and sent[0]["mirostat"] == 2
    assert EXTRA <= sent[0].keys()
