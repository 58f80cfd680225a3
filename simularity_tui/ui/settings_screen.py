"""Settings: the model, its context and sampling, graphics and theme, saved to settings.toml.

Every field is checked by the same rules as the file (settings.py); a wrong value is said next to
its field and nothing is saved until all are right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from .. import paths
from ..engine.chat_template import CHOICES
from ..engine.config import KvCacheType
from ..settings import GraphicsMode, Settings, save_settings, setting_help
from ..untrusted_text import printable
from .notify import notify_plain

# (section, key, label): what the settings screen edits as text; its help is the setting's description.
FIELDS: list[tuple[str, str, str]] = [
    ("model", "path", "Model file"),
    ("model", "backend", "Remote URL"),
    ("model", "n_ctx", "Context size"),
    ("model", "threads", "CPU threads"),
    ("model", "gpu_layers", "GPU layers"),
    ("model", "context_shift", "Context shift"),
    ("sampling", "temperature", "Temperature"),
    ("sampling", "top_k", "Top-k"),
    ("sampling", "top_p", "Top-p"),
    ("sampling", "min_p", "Min-p"),
    ("sampling", "repeat_penalty", "Repeat penalty"),
    ("sampling", "frequency_penalty", "Frequency penalty"),
    ("sampling", "presence_penalty", "Presence penalty"),
    ("sampling", "dry_multiplier", "DRY multiplier"),
    ("sampling", "xtc_probability", "XTC probability"),
    ("sampling", "mirostat", "Mirostat"),
    ("game", "max_reply_tokens", "Line budget"),
    ("game", "max_direction_tokens", "Stage budget"),
]


class SettingsScreen(Screen[Settings | None]):
    """Dismissed with the settings saved (None: left without saving)."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "dismiss", "Back")]

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        """`settings`: as in the file at `path` (None: the default settings file)."""
        super().__init__()
        self.settings = settings
        self.path = path or paths.settings_file()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings"):
            yield Static(Text(f"Saved in {printable(str(self.path))}", style="dim"))
            for section, key, label in FIELDS:
                value = getattr(getattr(self.settings, section), key)
                with Horizontal(classes="setting"):
                    yield Label(label, classes="setting-label")
                    yield Input(str(value).lower() if isinstance(value, bool) else str(value), id=f"{section}-{key}")
                yield _help(section, key)
                yield Static(id=f"{section}-{key}-problem", classes="setting-problem")
            with Horizontal(classes="setting"):
                yield Label("Chat template", classes="setting-label")
                yield Select(
                    [(name, name) for name in CHOICES], value=self.settings.model.template, allow_blank=False,
                    id="model-template",
                )  # fmt: skip
            yield _help("model", "template")
            with Horizontal(classes="setting"):
                yield Label("KV cache", classes="setting-label")
                yield Select(
                    [(kind, kind) for kind in get_args(KvCacheType)], value=self.settings.model.kv_cache,
                    allow_blank=False, id="model-kv_cache",
                )  # fmt: skip
            yield _help("model", "kv_cache")
            with Horizontal(classes="setting"):
                yield Label("Graphics", classes="setting-label")
                yield Select(
                    [(mode, mode) for mode in get_args(GraphicsMode)],
                    value=self.settings.ui.graphics,
                    allow_blank=False,
                    id="ui-graphics",
                )
            yield _help("ui", "graphics")
            with Horizontal(classes="setting"):
                yield Label("Theme", classes="setting-label")
                themes = ["pack", *sorted(name for name in self.app.available_themes if not name.startswith("pack-"))]
                current = self.settings.ui.theme if self.settings.ui.theme in themes else "pack"
                yield Select([(name, name) for name in themes], value=current, allow_blank=False, id="ui-theme")
            yield _help("ui", "theme")
            yield Button("Save", variant="primary", id="save")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Settings"

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.action_save()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "ui-theme" and event.value in self.app.available_themes:
            self.app.theme = str(event.value)  # a preview; kept when saved

    def action_save(self) -> None:
        data: dict[str, dict[str, Any]] = {"model": {}, "sampling": {}, "game": {}, "ui": {}}
        for section, key, _label in FIELDS:
            self.query_one(f"#{section}-{key}-problem", Static).update("")
            raw = self.query_one(f"#{section}-{key}", Input).value.strip()
            data[section][key] = {"true": True, "false": False}.get(raw.lower(), raw) if key == "context_shift" else raw
        data["model"]["template"] = self.query_one("#model-template", Select).value
        data["model"]["kv_cache"] = self.query_one("#model-kv_cache", Select).value
        data["ui"] = {
            "graphics": self.query_one("#ui-graphics", Select).value,
            "theme": self.query_one("#ui-theme", Select).value,
        }
        base = self.settings.model_dump()
        for section, values in data.items():
            base[section].update(values)
        if base["sampling"].get("seed") is None:
            base["sampling"].pop("seed", None)
        try:
            settings = Settings.model_validate(base)
        except ValidationError as error:
            for item in error.errors():
                where = "-".join(str(part) for part in item["loc"][:2])
                problem = self.query(f"#{where}-problem")
                message = Text(f"✗ {printable(item['msg'])}", style="bold red")
                if problem:
                    problem.first(Static).update(message)
            notify_plain(self, "Some settings are not right: see the marks.", severity="error")
            return
        # A sampling field counts as the player's (over a pack's recommendation) where it was set
        # before or is changed here; the form hands every field back, changed or not.
        before = self.settings.sampling
        chosen = before.model_fields_set | {
            key for key in type(before).model_fields if getattr(settings.sampling, key) != getattr(before, key)
        }
        sampling = type(before).model_validate(settings.sampling.model_dump(include=chosen))
        settings = settings.model_copy(update={"sampling": sampling})
        save_settings(settings, self.path)
        notify_plain(self, "Saved. The model's settings apply from the next start.", title="Settings")
        self.dismiss(settings)


def _help(section: str, key: str) -> Static:
    return Static(Text(setting_help(section, key), style="dim"), classes="setting-help")
