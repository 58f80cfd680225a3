"""The model library: the catalogue, `simularity models list | pull | rm | use`, and pulls from a
stand-in for the Hugging Face Hub on loopback (tests/hub_server.py) serving the embedded model's
GGUF under a made-up repository: a pull that completes and plays, one stopped half-way that resumes
with only the rest, and every way a pull fails, each a clear message with nothing half-done offered.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from simularity_tui import paths
from simularity_tui.cli import main
from simularity_tui.engine.embedded_model import EXPECTED_SHA256, MODEL_FILE_NAME
from simularity_tui.models import fit, store
from simularity_tui.models.catalogue import load_catalogue
from simularity_tui.models.errors import ModelLibraryError
from simularity_tui.models.fit import Memory
from simularity_tui.models.library import pull_target
from simularity_tui.scenario import bundled_packs_dir
from simularity_tui.toml_source import TomlProblems
from tests.conftest import TEST_THREADS
from tests.hub_server import FakeHub

REPO = "fake/story-GGUF"
FILE = "story-Q4_K_M.gguf"
MEMORY = Memory(available=8_000_000_000, total=12_000_000_000)  # the same verdicts on any machine


def simularity(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def catalogue_entry(tmp_path: Path, *, size: int | None = None, sha256: str | None = None) -> None:
    """A player's catalogue naming the stand-in Hub's file as `story:Q4_K_M`."""
    exact = (f", size = {size}" if size else ", about_gb = 0.3") + (f', sha256 = "{sha256}"' if sha256 else "")
    (paths.config_dir()).mkdir(parents=True, exist_ok=True)
    (paths.config_dir() / "models.toml").write_text(
        f'[models.story]\ntitle = "Story"\nrepo = "{REPO}"\nlicence = "MIT"\ncontext = 32768\n'
        f'[models.story.quants]\nQ4_K_M = {{ file = "{FILE}"{exact} }}\n'
    )


def nothing_offered() -> None:
    """No model file, partial or whole, under its own name; nothing listed as installed."""
    assert store.installed_files() == []
    assert not list(store.library_dir().rglob("*.gguf"))


@pytest.fixture(autouse=True)
def fixed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fit, "machine_memory", lambda: MEMORY)


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    """A small complete GGUF file (one tensor): for the failures that need no real model."""
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / "tiny.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_tensor("weights", np.arange(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    fake = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no token or cache of the machine's
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield fake
    fake.stop()


# -- the catalogue -----------------------------------------------------------------------------------


def test_the_bundled_catalogue_is_valid_and_holds_the_embedded_model() -> None:
    catalogue = load_catalogue()
    embedded = [entry for entry in catalogue.models.values() if entry.embedded]
    assert len(embedded) == 1
    (quant,) = embedded[0].quants.values()
    assert (quant.file, quant.sha256) == (MODEL_FILE_NAME, EXPECTED_SHA256)
    others = [entry for entry in catalogue.models.values() if not entry.embedded]
    assert len(others) >= 5 and all(entry.repo and entry.licence and entry.context for entry in others)
    sizes = sorted(quant.approx_bytes for entry in others for quant in entry.quants.values())
    assert sizes[0] < 2_000_000_000 < 8_000_000_000 < sizes[-1]  # several sizes, small to large


def test_a_players_catalogue_is_checked_with_file_line_and_column() -> None:
    paths.config_dir().mkdir(parents=True)
    own = paths.config_dir() / "models.toml"
    own.write_text(
        '[models.mine]\ntitle = "Mine"\nrepo = "me/mine"\nlicense = "MIT"\ncontext = 4096\n'
        '[models.mine.quants]\nQ4 = { file = "../escape.gguf", about_gb = 1 }\n'
    )
    with pytest.raises(TomlProblems) as raised:
        load_catalogue()
    text = str(raised.value)
    assert f"{own}:4:1: unknown key 'models.mine.license'; did you mean 'licence'?" in text
    assert f"{own}:7:1: models.mine.quants.Q4.file:" in text and "inside the repository" in text
    assert f"{own}:1:1: models.mine.licence: required, but missing" in text


def test_a_players_entry_joins_the_catalogue(tmp_path: Path) -> None:
    catalogue_entry(tmp_path, size=1234)
    catalogue = load_catalogue()
    assert catalogue.models["story"].repo == REPO and "llama-3.2-3b" in catalogue.models


def test_pull_chooses_the_largest_quantization_that_fits() -> None:
    catalogue = load_catalogue()
    assert pull_target(catalogue, ["qwen-2.5-7b"], MEMORY).label == "qwen-2.5-7b:Q6_K"
    assert pull_target(catalogue, ["qwen-2.5-7b:q8_0"], MEMORY).label == "qwen-2.5-7b:Q8_0"
    target = pull_target(catalogue, ["llama-3.2-3b:Q4_K_M"], MEMORY)
    assert (target.size, target.sha256) == (
        2019377696,
        "6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
    )
    with pytest.raises(ModelLibraryError, match="None of mistral-nemo-12b's quantizations fits"):
        pull_target(catalogue, ["mistral-nemo-12b"], Memory(available=2_000_000_000, total=4_000_000_000))
    with pytest.raises(ModelLibraryError, match="did you mean 'gemma-3-4b'"):
        pull_target(catalogue, ["gemma-3-4"], MEMORY)


def test_models_list_shows_sizes_context_licence_and_what_fits(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _err = simularity("models", "list", capsys=capsys)
    assert status == 0
    lines = out.splitlines()
    assert "Memory: 8.0 GB available of 12.0 GB." in lines[1] and "1 GiB more" in lines[1]
    assert any(
        line.startswith("llama-3.2-3b") and "131,072 tokens · Llama 3.2 Community License" in line for line in lines
    )
    assert "  Q4_K_M       0.25 GB  fits     bundled, in use" in lines  # the embedded model, played by default
    assert "  Q4_K_M       2.02 GB  fits" in lines  # an exact size: the catalogue knows it
    assert "  Q6_K        ~6.25 GB  fits" in lines and "  Q8_0        ~8.10 GB  tight" in lines
    assert "  Q8_0       ~13.02 GB  too big" in lines


def test_use_and_rm_keep_the_rest_of_the_settings(
    tmp_path: Path, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue_entry(tmp_path)
    installed = store.target_path(REPO, FILE)
    installed.parent.mkdir(parents=True)
    installed.write_bytes(tiny_gguf.read_bytes())
    store.write_stamp(installed, repo=REPO, file=FILE, sha256="0" * 64, commit="c")  # as a pull leaves it
    settings = paths.settings_file()
    settings.write_text(
        '# my settings\n[model]\nn_ctx = 2048  # small\npath = "" # the default\n\n[ui]\ntheme = "midnight"\n'
    )

    status, out, _err = simularity("models", "use", "story", capsys=capsys)
    assert status == 0 and "plays on story:Q4_K_M" in out
    text = settings.read_text()
    assert text.startswith("# my settings\n") and "n_ctx = 2048  # small" in text and "# the default" in text
    assert tomllib.loads(text)["model"]["path"] == str(installed) and tomllib.loads(text)["ui"]["theme"] == "midnight"
    status, out, _err = simularity("models", "list", capsys=capsys)
    assert "  Q4_K_M       0.00 GB  fits     installed, in use" in out.splitlines()

    status, out, _err = simularity("models", "rm", "story", capsys=capsys)
    assert status == 0 and "removed story:Q4_K_M" in out and "plays on the embedded model now" in out
    assert not installed.parent.exists() and tomllib.loads(settings.read_text())["model"]["path"] == ""
    assert "n_ctx = 2048  # small" in settings.read_text()


def test_use_refuses_what_is_not_installed_and_rm_the_embedded_model(capsys: pytest.CaptureFixture[str]) -> None:
    status, _out, err = simularity("models", "use", "gemma-3-4b", capsys=capsys)
    assert status == 2 and "gemma-3-4b is not installed" in err and "simularity models pull gemma-3-4b" in err
    status, _out, err = simularity("models", "rm", "gemma-3-270m", capsys=capsys)
    assert status == 2 and "comes with the game" in err
    assert simularity("models", "use", "gemma-3-270m", capsys=capsys)[0] == 0
    assert tomllib.loads(paths.settings_file().read_text())["model"]["path"] == ""


def test_a_file_changed_after_its_check_is_not_offered(tiny_gguf: Path) -> None:
    installed = store.target_path(REPO, FILE)
    installed.parent.mkdir(parents=True)
    installed.write_bytes(tiny_gguf.read_bytes())
    store.write_stamp(installed, repo=REPO, file=FILE, sha256="0" * 64, commit="c")
    assert store.installed(REPO, FILE) is not None
    with installed.open("ab") as handle:
        handle.write(b"more")
    assert store.installed(REPO, FILE) is None and store.installed_files() == []


# -- no network at all: no server needed -------------------------------------------------------------


def test_offline_and_unreachable_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and "HF_HUB_OFFLINE is set, so nothing is downloaded" in err and "Traceback" not in err
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and f"Cannot reach http://127.0.0.1:{port} to pull {REPO}/{FILE}" in err
    nothing_offered()


# -- pulls from the stand-in Hub ---------------------------------------------------------------------


def test_a_pull_completes_and_plays(
    hub: FakeHub, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(REPO, FILE, model_path, etag=EXPECTED_SHA256)
    catalogue_entry(tmp_path, size=model_path.stat().st_size, sha256=EXPECTED_SHA256)
    status, out, err = simularity("models", "pull", "story", capsys=capsys)
    assert status == 0, err
    pulled = store.target_path(REPO, FILE)
    assert f"pulled story:Q4_K_M: 0.25 GB, a complete GGUF file, sha256 {EXPECTED_SHA256}" in out
    assert pulled.stat().st_size == model_path.stat().st_size and hub.sent == model_path.stat().st_size
    assert simularity("models", "pull", "story", capsys=capsys)[1].startswith("story:Q4_K_M is installed already")
    assert simularity("models", "use", "story", capsys=capsys)[0] == 0

    # It plays: a game on the pulled file, with an empty cache (the embedded model is nowhere to be found).
    script = tmp_path / "script.txt"
    script.write_text("Good evening.\n")
    env = {**os.environ, "SIMULARITY_CACHE_DIR": str(tmp_path / "cache")}
    played = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "run", str(bundled_packs_dir() / "lighthouse"), "--script",
         str(script), "--threads", str(TEST_THREADS), "--n-ctx", "2048"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert played.returncode == 0, played.stderr
    said = played.stdout.splitlines()
    assert any(line.endswith(": Good evening.") for line in said) and said[-1].split(":")[0] != said[-2].split(":")[0]
    assert not (tmp_path / "cache" / "models").exists()


def test_a_stopped_pull_resumes_and_fetches_only_the_rest(
    hub: FakeHub, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = model_path.stat().st_size
    hub.add(REPO, FILE, model_path, etag=EXPECTED_SHA256)
    hub.hold_after = 64 << 20  # the server goes quiet after 64 MiB, as a slow network would
    pulling = subprocess.Popen(
        [sys.executable, "-m", "simularity_tui", "models", "pull", REPO, FILE],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
    )  # fmt: skip
    partial = store.partial_path(store.target_path(REPO, FILE), EXPECTED_SHA256)
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= 64 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    pulling.send_signal(signal.SIGINT)  # Ctrl+C
    _out, err = pulling.communicate(timeout=180)  # a loaded CI machine checks 250 MB slowly
    assert pulling.returncode == 130, err
    assert "Stopped pulling fake/story-GGUF story-Q4_K_M.gguf: 67.1 of 253.1 MB kept" in err
    assert "Pull it again to go on from there" in err and "Traceback" not in err
    nothing_offered()
    listed = simularity("models", "list", capsys=capsys)[1].splitlines()
    assert listed[-4:-2] == [
        "Pulled by repository and file:",
        f"  {REPO} {FILE}  ~0.07 GB  fits     partial (67 MB kept)",
    ]

    hub.hold_after = None
    hub.release.set()
    before = hub.sent
    status, out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 0, err
    assert "going on with fake/story-GGUF story-Q4_K_M.gguf from 67.1 MB" in err
    assert hub.sent - before == size - (64 << 20)  # only the rest crossed the wire
    assert [entry[2] for entry in hub.log if entry[0] == "GET"][-1] == f"bytes={64 << 20}-"
    assert store.installed(REPO, FILE) is not None and store.partials(store.target_path(REPO, FILE)) == []


def test_a_wrong_sha256_is_refused_and_deleted(
    hub: FakeHub, tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    published = hub.add(REPO, FILE, tiny_gguf, etag="ab" * 32)  # what arrives is not what the Hub publishes
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and "is not the published file: its sha256 is " in err and f"not {published}" in err
    assert "It was deleted. Pull again" in err
    nothing_offered()
    assert store.partials(store.target_path(REPO, FILE)) == []

    # The catalogue and the Hub disagree: said before a byte is fetched.
    catalogue_entry(tmp_path, sha256="cd" * 32)
    status, _out, err = simularity("models", "pull", "story", capsys=capsys)
    assert status == 2 and "is not the file the catalogue names" in err and "the repository has changed" in err
    assert [entry for entry in hub.log if entry[0] == "GET"] == [("GET", f"/cdn/{REPO}/{FILE}", None, None)]


def test_a_truncated_file_is_refused_and_deleted(
    hub: FakeHub, model_path: Path, tiny_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as whole:
        cut.write_bytes(whole.read(8 << 20))  # the repository's copy itself is cut short
    hub.add(REPO, FILE, cut)
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and "is not a usable model" in err and "incomplete GGUF file" in err
    nothing_offered()

    hub.add(REPO, FILE, tiny_gguf, announce=tiny_gguf.stat().st_size + 1000)  # says more than it sends
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and "sent only part of fake/story-GGUF/story-Q4_K_M.gguf" in err, err
    nothing_offered()
    assert store.partials(store.target_path(REPO, FILE)) == []


def test_a_missing_repository_or_file_is_a_clear_404(
    hub: FakeHub, tiny_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(REPO, FILE, tiny_gguf)
    status, _out, err = simularity("models", "pull", "fake/nothing-GGUF", FILE, capsys=capsys)
    assert status == 2 and f"{hub.url} has no repository fake/nothing-GGUF (or it is private)" in err
    status, _out, err = simularity("models", "pull", REPO, "other.gguf", capsys=capsys)
    assert status == 2 and f"{REPO} on {hub.url} has no file other.gguf" in err
    nothing_offered()


def test_a_stalling_server_times_out(
    hub: FakeHub, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(REPO, FILE, tiny_gguf)
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "0.5")
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "0.3")
    hub.stall_head = True
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and f"{hub.url} stopped answering while pulling {REPO}/{FILE}" in err
    hub.stall_head = False
    hub.hold_after = 100  # headers, 100 bytes, then silence (huggingface_hub tries 5 more times first)
    started = time.monotonic()
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and "stopped answering" in err and "Pull again: it goes on from where it stopped" in err
    assert time.monotonic() - started < 20
    nothing_offered()


def test_a_gated_repository_asks_for_a_token(
    hub: FakeHub, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(REPO, FILE, tiny_gguf)
    hub.gated[REPO] = "hf_test_token"
    status, _out, err = simularity("models", "pull", REPO, FILE, capsys=capsys)
    assert status == 2 and f"{REPO} is gated on {hub.url}" in err and "HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    assert simularity("models", "pull", REPO, FILE, capsys=capsys)[0] == 0
    head, get = hub.log[-2:]
    assert head[0] == "HEAD" and head[3] == "Bearer hf_test_token"
    assert get[0] == "GET" and get[3] is None  # the token stays with the Hub, not the CDN


def test_a_full_disk_is_reported_not_a_traceback(
    hub: FakeHub, model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.add(REPO, FILE, model_path, etag=EXPECTED_SHA256)

    def small_disk() -> None:  # RLIMIT_FSIZE: writes past 16 MiB fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))

    env = {**os.environ, "SIMULARITY_CACHE_DIR": str(tmp_path / "cache")}  # the log, within the limit
    done = subprocess.run(
        [sys.executable, "-m", "simularity_tui", "models", "pull", REPO, FILE],
        capture_output=True, text=True, env=env, preexec_fn=small_disk, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"No room to write {REPO}/{FILE} (16.8 MB of it kept): File too large" in done.stderr
    assert "Free some disk space" in done.stderr
    nothing_offered()
    status, out, _err = simularity("models", "rm", REPO, FILE, capsys=capsys)  # what was kept goes too
    assert status == 0 and out == f"removed {REPO} {FILE} (0.02 GB freed)\n" and not any(store.library_dir().iterdir())


@pytest.mark.parametrize(
    ("before", "kept"),
    [
        ("", None),  # no settings file yet
        ("# mine\n[model]\nn_ctx = 1024\n", "# mine\n[model]\npath = "),  # the key is added under [model]
        ('[ui]\ntheme = "midnight"  # dark\n', '[ui]\ntheme = "midnight"  # dark\n\n[model]\npath = '),
        ('model.path = "old.gguf"  # dotted\n', None),  # a layout the line edit leaves alone: rewritten
    ],
)
def test_set_model_path_edits_one_line_or_rewrites_the_file(before: str, kept: str | None) -> None:
    from simularity_tui.model_setting import set_model_path
    from simularity_tui.settings import load_settings

    settings = paths.settings_file()
    settings.parent.mkdir(parents=True, exist_ok=True)
    if before:
        settings.write_text(before)
    set_model_path("/models/a b.gguf", settings)
    assert load_settings(settings).model.path == "/models/a b.gguf"
    if kept is not None:
        assert settings.read_text().startswith(kept)
    if "n_ctx" in before:
        assert load_settings(settings).model.n_ctx == 1024
