"""The story-tree browser: every line and variant; go anywhere (the engine reads again only from
where the paths part), compare, branch a save from any line, delete a branch (asking first)."""

from __future__ import annotations

import tomllib

import pytest

from simularity_tui.scenario import LoadedPack, bundled_packs_dir, load_pack
from simularity_tui.story import Game, open_game
from simularity_tui.story.saves import save_path
from tests.fake_model import FakeSession

LIGHTHOUSE = bundled_packs_dir() / "lighthouse"


@pytest.fixture(scope="module")
def lighthouse() -> LoadedPack:
    return load_pack(LIGHTHOUSE)


async def branched_game(session: FakeSession, lighthouse: LoadedPack) -> Game:
    """Three turns, the middle reply regenerated twice: a tree with a fork of three variants."""
    session.replies.extend(["One.", "Two.", "Two, again.", "Two, a third time.", "Three."])
    game = Game(session, lighthouse, "storm")
    await game.say("First?").finish()
    await game.say("Second?").finish()
    await game.regenerate().finish()
    await game.regenerate().finish()
    await game.say("Third?").finish()
    return game


async def test_jumping_to_any_line_makes_the_story_the_path_to_it(lighthouse: LoadedPack) -> None:
    game = await branched_game(FakeSession(), lighthouse)
    assert [line.text for line in game.lines[-3:]] == ["Two, a third time.", "Third?", "Three."]
    first_variant = next(nid for nid, node in game.tree.nodes.items() if node.line and node.line.text == "Two.")
    game.jump(first_variant)
    assert game.lines[-1].text == "Two." and game.variants() == (0, 3)
    game.jump(max(game.tree.nodes))  # and back to the newest line
    assert game.lines[-1].text == "Three."


async def test_deleting_a_branch_takes_its_lines_and_keeps_the_rest(lighthouse: LoadedPack) -> None:
    game = await branched_game(FakeSession(), lighthouse)
    in_play = game.tree.head
    third = next(nid for nid, node in game.tree.nodes.items() if node.line and node.line.text == "Two, a third time.")
    assert game.delete_branch(third) == 3  # the variant, the player's line after it, the reply
    assert in_play not in game.tree.nodes and game.lines[-1].text == "Second?"  # where the branch began
    assert len(game.tree.nodes[game.tree.head].children) == 2  # the other two variants stay


async def test_a_branch_saved_from_any_line_ends_there(lighthouse: LoadedPack) -> None:
    opened = await open_game(FakeSession(), lighthouse, save_path("lighthouse", "tree"))
    opened.game.say("Hello?")
    await opened.game.say("Again?").finish()
    first_reply = opened.game.lines[-3]
    node = next(nid for nid, n in opened.game.tree.nodes.items() if n.line == first_reply)
    path = opened.save_branch("from-there", node)
    saved = tomllib.loads(path.read_text())
    by_id = {n["id"]: n for n in saved["nodes"]}
    assert by_id[saved["head"]]["text"] == first_reply.text
    assert opened.game.lines[-1].text != first_reply.text  # the game goes on where it was


async def test_the_tree_screen_goes_compares_branches_and_deletes(fake_session: FakeSession) -> None:
    from textual.widgets import Tree

    from simularity_tui.ui.tree_screen import TreeScreen
    from tests.test_ui import SIZE, play_screen, turn, wait_for
    from tests.test_ui import lighthouse as app_for

    fake_session.replies.extend(["One.", "Two.", "Two, again."])
    app = app_for(fake_session)
    async with app.run_test(size=SIZE) as pilot:
        screen = await play_screen(app)
        await turn(pilot, screen, *"Hello", "enter")
        await turn(pilot, screen, "ctrl+r")
        await pilot.press("ctrl+b")
        await wait_for(lambda: isinstance(app.screen, TreeScreen))
        tree = app.screen.query_one(Tree)
        await wait_for(lambda: tree.cursor_node is not None and tree.cursor_node.data == screen.game.tree.head)
        await pilot.press("up", "c")  # the other variant of the reply, beside the one in play
        compared = app.screen.compared
        assert compared is not None and compared[1] == screen.game.tree.head and compared[0] != compared[1]
        await pilot.press("down")
        await pilot.press("up", "up", "enter")  # past the other variant: the player's line before the reply
        await wait_for(lambda: app.screen is screen)
        assert screen.game.lines[-1].text == "Hello"
        await pilot.press("ctrl+b")
        await wait_for(lambda: isinstance(app.screen, TreeScreen))
        await pilot.press("b")
        await pilot.press("d")
        assert len(screen.game.tree.nodes) > 1  # asked first
        await pilot.press("d")
        await pilot.press("escape")
        await wait_for(lambda: app.screen is screen)
        assert screen.game.lines[-1].text != "Hello"
