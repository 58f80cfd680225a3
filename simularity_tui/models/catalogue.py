"""The catalogue: GGUF models good for stories, by name, each with its quantizations.

`models.toml` ships in the package; a player may add their own entries in `models.toml` in the
config directory (an entry of the same name replaces the bundled one). Both are read like a pack's
files: every problem is reported as `file:line:col: message` (toml_source.py), never ignored.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .. import paths
from ..text_rules import line_problem
from ..toml_source import Problem, TomlProblems, load_model, locate, read_text_file
from .errors import ModelLibraryError

CATALOGUE_FILE = "models.toml"
GB = 1_000_000_000  # the Hub lists sizes in decimal gigabytes; so does the library

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
QuantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,32}$")]
# The Hub's repository ids: OWNER/NAME, letters, digits, '-', '_' and '.'.
REPO_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="after")
    @classmethod
    def _one_line(cls, value: object) -> object:
        # Titles, files and licences reach the terminal and HTTP paths: one line of printable text.
        if isinstance(value, str) and (problem := line_problem(value, what="a catalogue value")):
            raise ValueError(problem)
        return value


class Quant(_Strict):
    """One file of a repository: a quantization of the model."""

    file: Annotated[str, Field(min_length=6, max_length=200, pattern=r"\.gguf$")]
    size: Annotated[int | None, Field(gt=0, description="Exact bytes: checked after the download.")] = None
    about_gb: Annotated[
        float | None, Field(gt=0, le=1000, description="The size the repository lists, for listing and fit only.")
    ] = None
    sha256: Annotated[str | None, Field(pattern=r"^[0-9a-f]{64}$")] = None

    @field_validator("file")
    @classmethod
    def _stays_in_the_repository(cls, value: str) -> str:
        parts = value.split("/")
        if value.startswith("/") or "\\" in value or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"'{value}' must be a file's path inside the repository (with / between folders)")
        return value

    @model_validator(mode="after")
    def _has_a_size(self) -> Quant:
        if self.size is None and self.about_gb is None:
            raise ValueError("give 'size' (exact bytes) or 'about_gb' (the size the repository lists)")
        return self

    @property
    def approx_bytes(self) -> int:
        """The exact size where known, else the listed one."""
        return self.size if self.size is not None else int((self.about_gb or 0) * GB)


class Entry(_Strict):
    """A model: its repository on the Hub (or the embedded one), what it is, its quantizations."""

    title: Annotated[str, Field(min_length=1, max_length=80)]
    repo: Annotated[str | None, Field(pattern=REPO_ID)] = None
    embedded: bool = False
    licence: Annotated[str, Field(min_length=1, max_length=80)]
    context: Annotated[int, Field(ge=256, le=1 << 24, description="The context it was trained for, in tokens.")]
    description: Annotated[str, Field(max_length=500)] = ""
    quants: Annotated[dict[QuantName, Quant], Field(min_length=1, max_length=32)]

    @model_validator(mode="after")
    def _one_source(self) -> Entry:
        if self.embedded == (self.repo is not None):
            raise ValueError("give 'repo' (OWNER/NAME on the Hub), or 'embedded = true', not both")
        if self.embedded and len(self.quants) != 1:
            raise ValueError("the embedded model has exactly one file")
        return self


class Catalogue(_Strict):
    models: Annotated[dict[Name, Entry], Field(max_length=500)] = {}


def bundled_catalogue_path() -> Path:
    return Path(__file__).with_name(CATALOGUE_FILE)


def user_catalogue_path() -> Path:
    return paths.config_dir() / CATALOGUE_FILE


def bundled_catalogue() -> Catalogue:
    return _read(bundled_catalogue_path())


def load_catalogue(user_file: Path | None = None) -> Catalogue:
    """The bundled catalogue with the player's entries (`user_file`, default: the config dir's) over it."""
    bundled = bundled_catalogue()
    user_file = user_file or user_catalogue_path()
    if not user_file.exists():
        return bundled
    own = _read(user_file)
    embedded = [name for name, entry in own.models.items() if entry.embedded]
    if embedded:  # the embedded model comes with the package; a player's entry cannot be it
        source = read_text_file(user_file)
        problems = [
            Problem(user_file, *locate(source, ["models", name, "embedded"]), "only the bundled catalogue has it")
            for name in embedded
        ]
        raise TomlProblems(problems, hint=f"Give these entries a 'repo' instead, in {user_file}.")
    return Catalogue(models={**bundled.models, **own.models})


def _read(path: Path) -> Catalogue:
    catalogue = load_model(path, Catalogue, hint=f"Fix {path}: see the comments in the bundled models.toml.")
    assert isinstance(catalogue, Catalogue)
    return catalogue


def split_spec(spec: str) -> tuple[str, str | None]:
    """`NAME[:QUANT]` as (name, quant or None)."""
    name, _, quant = spec.partition(":")
    return name.strip().lower(), quant.strip() or None


def find_entry(catalogue: Catalogue, name: str) -> Entry:
    """The entry called `name`, or a `ModelLibraryError` with the nearest names."""
    entry = catalogue.models.get(name)
    if entry is not None:
        return entry
    guess = difflib.get_close_matches(name, list(catalogue.models), n=1)
    raise ModelLibraryError(
        f"No model '{name}' in the catalogue" + (f"; did you mean '{guess[0]}'?" if guess else ""),
        hint="`simularity models list` shows every name; `simularity models pull OWNER/REPO FILE.gguf` "
        "pulls any GGUF file from the Hub.",
    )


def find_quant(entry: Entry, name: str, quant: str) -> str:
    """The catalogue's spelling of `quant` for `entry` (q4_k_m finds Q4_K_M)."""
    for known in entry.quants:
        if known.lower() == quant.lower():
            return known
    raise ModelLibraryError(
        f"{name} has no quantization '{quant}'", hint=f"Its quantizations: {', '.join(entry.quants)}"
    )
