"""The command palette (Ctrl+P): every story control and every screen, searchable by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from ..untrusted_text import printable
from .play_screen import PlayScreen

Command = tuple[str, str, Callable[[], object]]  # (name, help, what it does)


class StoryCommands(Provider):
    def _commands(self) -> list[Command]:
        app = self.app
        commands: list[Command] = [  # the app's own actions, by name: the app owns navigation
            ("Library", "Every pack, with its cover", partial(app.run_action, "library")),
            ("Settings", "Model, sampling, graphics, theme", partial(app.run_action, "settings")),
            ("Models", "Download, delete and choose models (F5)", partial(app.run_action, "models")),
            ("Help", "Every key", partial(app.run_action, "help")),
        ]
        for theme in sorted(name for name in app.available_themes if not name.startswith("pack-")):
            commands.append(
                (f"Theme: {theme}", "Colours for now (Settings keeps them)", partial(setattr, app, "theme", theme))
            )
        screen = self.screen  # the screen the palette was opened over
        if isinstance(screen, PlayScreen):
            commands += [
                ("Continue the story", "Let the story go on without a line of yours", screen.action_continue_story),
                ("Regenerate the last line", "A new variant, with a fresh seed", screen.action_regenerate),
                ("Previous variant", "Of the last line", partial(screen.action_variant, -1)),
                ("Next variant", "Of the last line", partial(screen.action_variant, 1)),
                ("Step back", "Undo the last line (it stays in the story tree)", screen.action_undo),
                ("Step forward", "Redo", screen.action_redo),
                ("Edit the last line", "Rewrite it; the engine re-reads from there", screen.action_edit_last),
                ("Stop writing", "End the line being written", screen.action_stop),
                ("Save a copy", "Branch the story into a new save", screen.action_branch),
                ("Export the transcript", "As Markdown", screen.action_export),
                ("Saves", "This pack's saves", screen.action_saves),
                (
                    "Author's note",
                    "Text the model reads near the end of the story, from the next line on (F7)",
                    screen.action_authors_note,
                ),
                (
                    "Memory",
                    "The summary of the story so far and your plot essentials, corrected (F8)",
                    screen.action_memory,
                ),
                (
                    "Say, do, story or ooc",
                    "How your next entry acts: a line, an action, narration, a direction (Ctrl+T)",
                    screen.action_cycle_act,
                ),
                (
                    "Go on with the last line",
                    "The model continues it where it stopped (Ctrl+G); /lead NAME: TEXT begins one for it",
                    screen.action_extend,
                ),
                (
                    "Write my next line for me",
                    "The model writes your line into the input, to edit and send (Ctrl+O)",
                    screen.action_impersonate,
                ),
                (
                    "The story tree",
                    "Every line, variant and branch: go anywhere, compare, branch a save, delete (Ctrl+B)",
                    screen.action_story_tree,
                ),
                (
                    "Lore",
                    "Every entry in play; add, edit, disable or delete your own (F10)",
                    screen.action_lore,
                ),
                (
                    "Persona",
                    "Your name and who you are, from the next line on (F9)",
                    screen.action_persona,
                ),
                (
                    "Prompt inspector",
                    "What the model reads next, and the lore each line brought in (F6)",
                    screen.action_toggle_inspector,
                ),
            ]
            pack = screen.game.pack
            for number, character in enumerate((c for c in pack.characters.values() if not c.player), 1):
                if number <= 9:
                    commands.append(
                        (
                            f"Let {printable(character.name)} speak, or not",
                            f"Alt+{number}",
                            partial(screen.action_toggle_speaker, number),
                        )
                    )
        return commands

    async def discover(self) -> Hits:
        for name, about, run in self._commands():
            yield DiscoveryHit(Content(name), run, help=about)  # plain text: pack names are not markup

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, about, run in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, _highlight(matcher, query, name), run, help=about)


def _highlight(matcher: Matcher, query: str, name: str) -> Content:
    """As `Matcher.highlight`, which reads its candidate as markup: a pack's names are plain text."""
    content = Content(name)
    _score, offsets = matcher.fuzzy_search.match(query, name)
    for offset in offsets:
        if not name[offset].isspace():
            content = content.stylize(matcher.match_style, offset, offset + 1)
    return content
