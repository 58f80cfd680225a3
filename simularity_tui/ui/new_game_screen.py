"""A new game of a pack: which episode to start from, and the player's name."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, OptionList
from textual.widgets.option_list import Option

from ..scenario import LoadedPack
from ..untrusted_text import printable
from .messages import PlayRequested


class NewGameScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "start", "Start")]

    def __init__(self, loaded: LoadedPack) -> None:
        super().__init__()
        self.loaded = loaded

    def compose(self) -> ComposeResult:
        pack = self.loaded.pack
        yield Header()
        with Vertical(id="new-game"):
            yield Label(Text(f"A new game of {printable(pack.name)}", style="bold"))
            yield Label("Start from:")
            yield OptionList(
                *(
                    Option(Text.assemble((printable(e.name), "bold"), "\n", (printable(e.description), "dim")), id=eid)
                    for eid, e in pack.episodes.items()
                ),
                id="episodes",
            )
            yield Label("Your name:")
            yield Input(value=printable(pack.player.name), max_length=40, id="player-name")
            yield Label("Who you are:")
            yield Input(value=printable(pack.player.description), max_length=400, id="player-description")
            yield Button("Start", variant="primary", id="start")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "New game"
        episodes = self.query_one("#episodes", OptionList)
        episodes.highlighted = 0
        episodes.focus()

    def on_option_list_option_selected(self, _event: OptionList.OptionSelected) -> None:
        self.query_one("#player-name", Input).focus()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.action_start()

    def on_button_pressed(self, _event: Button.Pressed) -> None:
        self.action_start()

    def action_start(self) -> None:
        episodes = self.query_one("#episodes", OptionList)
        option = episodes.get_option_at_index(episodes.highlighted or 0)
        name = " ".join(printable(self.query_one("#player-name", Input).value).split())
        about = " ".join(printable(self.query_one("#player-description", Input).value).split())
        described = about if about != " ".join(self.loaded.pack.player.description.split()) else ""
        self.post_message(
            PlayRequested(
                self.loaded, save=None, episode=str(option.id), player_name=name or None,
                player_description=described or None,
            )
        )  # fmt: skip
