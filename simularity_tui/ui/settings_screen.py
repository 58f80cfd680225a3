"""Settings: the model, its context and sampling, graphics and theme, saved to settings.toml.

Every field is checked by the same rules as the file (settings.py); a wrong value is said next to
its field and nothing is saved until all are right.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from .. import paths
from ..settings import Settings, save_settings
from ..untrusted_text import printable
from .screen_base import SimularityScreen

# (section, key, label, help)
FIELDS: list[tuple[str, str, str, str]] = [
    ("model", "path", "Model file", "A GGUF file; empty plays on the embedded Gemma 3 270M."),
    ("model", "backend", "Remote URL", "An OpenAI-compatible server (llama-server, vLLM, SGLang); empty: in-process."),
    ("model", "n_ctx", "Context size", "Tokens the model keeps in view (at most what it was trained for)."),
    ("model", "threads", "CPU threads", "0 picks the number of physical cores."),
    ("model", "gpu_layers", "GPU layers", "Layers a GPU build of llama.cpp takes; -1 takes all."),
    ("model", "context_shift", "Context shift", "true: shift the KV cache when full; false: re-read the kept lines."),
    ("sampling", "temperature", "Temperature", "0 is greedy: always the likeliest token."),
    ("sampling", "top_k", "Top-k", "Only the k likeliest tokens (0: all)."),
    ("sampling", "top_p", "Top-p", "Only the likeliest tokens that add up to p."),
    ("sampling", "min_p", "Min-p", "Leave out tokens less likely than p × the likeliest."),
    ("sampling", "repeat_penalty", "Repeat penalty", "1.0: none."),
    ("game", "max_reply_tokens", "Line budget", "Tokens a line may take."),
    ("game", "max_direction_tokens", "Stage budget", "Tokens a line's stage commands may take."),
]
GRAPHICS = ["auto", "kitty", "sixel", "halfcell", "unicode", "none"]


class SettingsScreen(SimularityScreen):
    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, settings: Settings, path: Path | None = None) -> None:
        """`settings`: as in the file at `path` (None: the default settings file)."""
        super().__init__()
        self.settings = settings
        self.path = path or paths.settings_file()

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="settings"):
            yield Static(Text(f"Saved in {printable(str(self.path))}", style="dim"))
            for section, key, label, about in FIELDS:
                value = getattr(getattr(self.settings, section), key)
                with Horizontal(classes="setting"):
                    yield Label(label, classes="setting-label")
                    yield Input(str(value).lower() if isinstance(value, bool) else str(value), id=f"{section}-{key}")
                yield Static(Text(about, style="dim"), classes="setting-help")
                yield Static(id=f"{section}-{key}-problem", classes="setting-problem")
            with Horizontal(classes="setting"):
                yield Label("Graphics", classes="setting-label")
                yield Select(
                    [(mode, mode) for mode in GRAPHICS],
                    value=self.settings.ui.graphics,
                    allow_blank=False,
                    id="ui-graphics",
                )
            yield Static(
                Text("How the stage is drawn (applies to the next game).", style="dim"), classes="setting-help"
            )
            with Horizontal(classes="setting"):
                yield Label("Theme", classes="setting-label")
                themes = ["pack", *sorted(name for name in self.app.available_themes if not name.startswith("pack-"))]
                current = self.settings.ui.theme if self.settings.ui.theme in themes else "pack"
                yield Select([(name, name) for name in themes], value=current, allow_blank=False, id="ui-theme")
            yield Static(Text("'pack' follows each pack's own colours.", style="dim"), classes="setting-help")
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
        for section, key, _label, _about in FIELDS:
            self.query_one(f"#{section}-{key}-problem", Static).update("")
            raw = self.query_one(f"#{section}-{key}", Input).value.strip()
            data[section][key] = {"true": True, "false": False}.get(raw.lower(), raw) if key == "context_shift" else raw
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
            self.notify("Some settings are not right: see the marks.", severity="error")
            return
        save_settings(settings, self.path)
        self.simularity.settings_changed(settings)
        self.notify("Saved. The model's settings apply from the next start.", title="Settings")
        self.app.pop_screen()
