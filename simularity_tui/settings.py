"""The player's settings: `settings.toml` in the platformdirs config directory.

Every key is optional; a missing file means defaults, which play on the embedded model. Unknown keys
and wrong types are reported as `file:line:col` problems, never ignored silently.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import paths
from . import sampling_fields as F
from .atomic import write_atomic
from .budget_defaults import DIRECTION_TOKENS, LINE_TOKENS, REMIND_EVERY
from .engine.chat_template import TemplateChoice
from .engine.config import KvCacheType, ModelConfig, SamplingParams
from .engine.remote.config import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, RemoteConfig, checked_url
from .errors import UserFacingError
from .first_frame import PACK_THEME
from .text_rules import line_problem
from .toml_source import load_model

if TYPE_CHECKING:
    from .story import Budgets

log = logging.getLogger("simularity")
API_KEY_VARIABLE = "SIMULARITY_API_KEY"  # the model server's key, when not in the file (--api-key sets it)
# The engine's and the story's own defaults are the settings' defaults: one home for each number
# (the story's budgets keep theirs in budget_defaults.py, so that the settings import no story).
_SAMPLING = SamplingParams()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: object) -> object:
        # Paths, URLs, keys and names reach logs, HTTP headers and the screen: one line of text each.
        if isinstance(value, str) and (problem := line_problem(value, what="a setting")):
            raise ValueError(problem)
        return value


class ModelSettings(_Section):
    path: Annotated[str, Field(description="A GGUF file; empty plays on the embedded Gemma 3 270M.")] = ""
    n_ctx: Annotated[
        int, Field(ge=256, le=1 << 20, description="Tokens the model keeps in view (at most what it was trained for).")
    ] = 4096
    threads: Annotated[int, Field(ge=0, le=512, description="0 picks the number of physical cores.")] = 0
    gpu_layers: Annotated[
        Annotated[int, Field(ge=-1)] | Literal["auto"],
        Field(description='Layers a GPU build of llama.cpp takes; -1 takes all; "auto" as many as fit.'),
    ] = 0
    batch: Annotated[int, Field(ge=8, le=8192, description="Tokens of a prompt read in one step.")] = 512
    template: Annotated[
        TemplateChoice,
        Field(description="The chat frame: auto (the model's own), raw (a plain transcript), or a preset."),
    ] = "auto"
    context_shift: Annotated[
        bool, Field(description="true: shift the KV cache when full; false: re-read the kept lines.")
    ] = True
    kv_cache: Annotated[
        KvCacheType, Field(description="The KV cache's type: q8_0 halves its memory and the resume file.")
    ] = "f16"
    backend: Annotated[
        str, Field(description="An OpenAI-compatible server (llama-server, vLLM, SGLang); empty: in-process.")
    ] = ""
    api_key: Annotated[str, Field(description="The server's key (SIMULARITY_API_KEY and --api-key win).")] = ""
    api_key_file: Annotated[
        str, Field(description="A file whose first line is the server's key (the key itself stays out of this file).")
    ] = ""
    api: Annotated[
        Literal["completions", "chat"],
        Field(description="The server's API: completions (the prompt as text), or chat (chat completions only)."),
    ] = "completions"
    server_slot: Annotated[
        int,
        Field(
            ge=-1,
            le=4095,
            description="llama-server's slot to play in (its own KV cache); -1: slot 0 of a one-slot server.",
        ),
    ] = -1
    connect_timeout: Annotated[float, Field(gt=0, le=600, description="Seconds to reach the server.")] = (
        DEFAULT_CONNECT_TIMEOUT
    )
    read_timeout: Annotated[float, Field(gt=0, le=3600, description="Longest wait for the server's next word.")] = (
        DEFAULT_READ_TIMEOUT
    )

    @field_validator("backend")
    @classmethod
    def _backend_is_a_url(cls, value: str) -> str:
        return checked_url(value) if value.strip() else ""


class SamplingSettings(_Section):
    """The types and ranges are sampling_fields.py's, which a pack's recommended `[sampling]` shares."""

    temperature: F.Temperature = _SAMPLING.temperature
    top_k: F.TopK = _SAMPLING.top_k
    top_p: F.TopP = _SAMPLING.top_p
    min_p: F.MinP = _SAMPLING.min_p
    repeat_penalty: F.RepeatPenalty = _SAMPLING.repeat_penalty
    repeat_last_n: F.RepeatLastN = _SAMPLING.repeat_last_n
    frequency_penalty: F.FrequencyPenalty = _SAMPLING.frequency_penalty
    presence_penalty: F.PresencePenalty = _SAMPLING.presence_penalty
    typical_p: F.TypicalP = _SAMPLING.typical_p
    dry_multiplier: F.DryMultiplier = _SAMPLING.dry_multiplier
    dry_base: F.DryBase = _SAMPLING.dry_base
    dry_allowed_length: F.DryAllowedLength = _SAMPLING.dry_allowed_length
    dry_penalty_last_n: F.DryPenaltyLastN = _SAMPLING.dry_penalty_last_n
    dry_sequence_breakers: F.DrySequenceBreakers = list(_SAMPLING.dry_sequence_breakers)
    xtc_probability: F.XtcProbability = _SAMPLING.xtc_probability
    xtc_threshold: F.XtcThreshold = _SAMPLING.xtc_threshold
    mirostat: F.Mirostat = 0
    mirostat_tau: F.MirostatTau = _SAMPLING.mirostat_tau
    mirostat_eta: F.MirostatEta = _SAMPLING.mirostat_eta
    seed: F.Seed | None = _SAMPLING.seed


class GameSettings(_Section):
    scenarios_dir: Annotated[str, Field(description="Extra packs, beside the bundled ones.")] = ""
    max_reply_tokens: Annotated[int, Field(ge=1, le=4096, description="Tokens a line may take.")] = LINE_TOKENS
    max_direction_tokens: Annotated[
        int, Field(ge=4, le=256, description="Tokens a line's stage commands may take.")
    ] = DIRECTION_TOKENS
    authors_note_every: Annotated[
        int, Field(ge=1, le=64, description="The author's note is read again once it is this many lines back.")
    ] = REMIND_EVERY


GraphicsMode = Literal["auto", "kitty", "sixel", "halfcell", "unicode", "none"]  # --graphics and the screen list these


class UiSettings(_Section):
    graphics: Annotated[GraphicsMode, Field(description="How the stage is drawn (applies to the next game).")] = "auto"
    theme: Annotated[str, Field(description="'pack' follows each pack's own colours.")] = PACK_THEME


class Settings(_Section):
    model: ModelSettings = ModelSettings()
    sampling: SamplingSettings = SamplingSettings()
    game: GameSettings = GameSettings()
    ui: UiSettings = UiSettings()

    def model_config_for(self, model_path: Path) -> ModelConfig:
        return ModelConfig(
            path=model_path,
            n_ctx=self.model.n_ctx,
            n_threads=self.model.threads or None,
            n_gpu_layers=self.gpu_layers_for(model_path),
            n_batch=self.model.batch,
            context_shift=self.model.context_shift,
            template=self.model.template,
            kv_cache=self.model.kv_cache,
        )

    def gpu_layers_for(self, model_path: Path) -> int:
        """`[model] gpu_layers`, with "auto" resolved to what `simularity doctor` suggests for the
        model at `model_path` and this n_ctx (0 on a llama.cpp build that cannot offload)."""
        if self.model.gpu_layers != "auto":
            return self.model.gpu_layers
        from .engine.llama_build import auto_gpu_layers  # llama.cpp loads here, only for "auto"

        layers, why = auto_gpu_layers(model_path, self.model.n_ctx, self.model.kv_cache)
        log.info("gpu_layers auto: %d (%s)", layers, why)
        return layers

    def remote_config(self) -> RemoteConfig | None:
        """The server to play on when `[model] backend` (or --backend) is set; None plays in-process."""
        if not self.model.backend:
            return None
        return RemoteConfig(
            url=self.model.backend,
            api_key=os.environ.get(API_KEY_VARIABLE) or self.model.api_key or self._key_from_file() or None,
            n_ctx=self.model.n_ctx,
            connect_timeout=self.model.connect_timeout,
            read_timeout=self.model.read_timeout,
            template=self.model.template,
            slot=self.model.server_slot if self.model.server_slot >= 0 else None,
            api=self.model.api,
        )

    def _key_from_file(self) -> str:
        """`[model] api_key_file`'s first line; a clear error where it cannot be read."""
        if not self.model.api_key_file:
            return ""
        path = Path(self.model.api_key_file).expanduser()
        try:
            with path.open(encoding="utf-8") as file:
                return file.readline().strip()
        except (OSError, UnicodeDecodeError) as error:
            raise UserFacingError(
                f"[model] api_key_file: cannot read {path} ({getattr(error, 'strerror', None) or error})",
                hint="Point it at a file whose first line is the server's key, or set SIMULARITY_API_KEY.",
            ) from None

    def budgets(self) -> Budgets:
        from .story import Budgets  # the story, only for a game

        return Budgets(
            directions=self.game.max_direction_tokens,
            line=self.game.max_reply_tokens,
            remind_every=self.game.authors_note_every,
        )

    def sampling_params(self, preset: BaseModel | None = None) -> SamplingParams:
        """The engine's sampling. `preset`: a pack's recommended `[sampling]` (fields None where it
        recommends nothing); it applies to each field the player has not set in settings.toml."""
        chosen = self.sampling.model_dump()
        if preset is not None:
            for key, value in preset.model_dump().items():
                if value is not None and key in chosen and key not in self.sampling.model_fields_set:
                    chosen[key] = value
        chosen["dry_sequence_breakers"] = tuple(chosen["dry_sequence_breakers"])
        return SamplingParams(**chosen)


def setting_help(section: str, key: str) -> str:
    """What `[section] key` does, as the settings screen says it: the field's description."""
    model = Settings.model_fields[section].annotation
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model.model_fields[key].description or ""


def load_settings(path: Path | None = None) -> Settings:
    """Settings from `path` (default: the config dir); defaults when the file does not exist."""
    path = path or paths.settings_file()
    if not path.exists():
        return Settings()
    settings = load_model(path, Settings, hint=f"Fix or delete {path}; every key is optional.")
    assert isinstance(settings, Settings)
    return settings


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write settings as TOML, atomically, leaving out what equals the default."""
    path = path or paths.settings_file()
    data = settings.model_dump(exclude_defaults=True, exclude_none=True)
    # A sampling value the player set stays set even when it equals the default: it is what keeps a
    # pack's recommended `[sampling]` from applying (Settings.sampling_params).
    chosen = settings.sampling.model_dump(include=settings.sampling.model_fields_set, exclude_none=True)
    if chosen:
        merged = {**chosen, **data.get("sampling", {})}
        data["sampling"] = {key: merged[key] for key in SamplingSettings.model_fields if key in merged}
    write_atomic(path, tomli_w.dumps(data))
    return path
