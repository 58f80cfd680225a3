"""The prompt inspector beside the story (F6, or the palette): the parts the model reads for the
next line, and the lore debugger, both following the story line by line. On the fake model: what
the panel shows depends on the pack and the story, not on what a model writes."""

from __future__ import annotations

from textual.widgets import DataTable, Static

from simularity_tui.ui.prompt_panel import PromptPanel
from tests.fake_model import FakeSession
from tests.test_ui import SIZE, lighthouse, play_screen, turn, wait_for


def _rows(panel: PromptPanel) -> list[tuple[str, ...]]:
    table = panel.query_one("#lore-table", DataTable)
    return [tuple(str(cell) for cell in table.get_row_at(index)) for index in range(table.row_count)]


def _parts_text(panel: PromptPanel) -> str:
    return str(panel.query_one("#prompt-parts", Static).render())


async def test_f6_shows_the_next_lines_prompt_and_follows_the_story(fake_session: FakeSession) -> None:
    fake_session.replies.append("The boat? Nobody speaks of the boat.")
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        panel = screen.query_one(PromptPanel)
        assert not panel.display  # closed until asked for
        await pilot.press("f6")
        await wait_for(lambda: "Pinned block" in _parts_text(panel))
        text = _parts_text(panel)
        for heading in ("scenario", "characters", "examples", "The story", "line 3 · Pip", "The next line", "stage"):
            assert heading in text, heading
        totals = str(panel.query_one("#prompt-totals", Static).render())
        assert f"of {fake_session.n_ctx:,} tokens" in totals and "KV cache" in totals
        assert any(row[0] == "4" and row[1].startswith("pip-") for row in _rows(panel))  # "cat" on line 2

        await turn(pilot, screen, *"Did you see the boat?", "enter")  # line 4 is the player's, line 5 the reply
        await wait_for(lambda: "line 5 · Mira" in _parts_text(panel) or "line 5 · Narrator" in _parts_text(panel))
        rows = _rows(panel)
        boat = next(row for row in rows if row[1] == "the-boat" and row[0] == "5")
        assert boat[0] == "5" and "“boat”" in boat[2] and "line 4" in boat[2]
        tom = next(row for row in rows if row[1] == "tom" and row[0] == "5")
        assert "in entry the-boat" in tom[2] and tom[3] == "in to line 15"  # recursion; sticky for ten lines
        assert ("6", "the-boat", "still in the window", "kept") in rows  # the next line's own scan heads the table
        assert rows[0][0] == "6" and any("dropped: delay" in row[3] for row in rows)  # the storm waits for line 12

        await pilot.press("f6")
        assert not panel.display


async def test_the_palette_opens_the_inspector(fake_session: FakeSession) -> None:
    app = lighthouse(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await pilot.press("ctrl+p", *"prompt inspector")
        await pilot.pause()
        await pilot.press("enter")
        panel = screen.query_one(PromptPanel)
        await wait_for(lambda: "Pinned block" in _parts_text(panel))
        assert panel.display
