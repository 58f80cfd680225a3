"""The simulation: the story tree, the stage, lore, memory, achievements and saves, and the prompt
that carries them. Drives the engine; knows nothing of the screen, so it runs headless (tests,
benchmarks, `simularity run`)."""

from .budgets import Budgets
from .game import Game
from .lore import Firing, LoreScan
from .play import SavedGame, open_game
from .prompt_view import PromptPart, PromptView
from .stage import Stage, StageCommand
from .tree import Line, StoryTree
from .turn import Turn

__all__ = [
    "Budgets",
    "Firing",
    "Game",
    "Line",
    "LoreScan",
    "PromptPart",
    "PromptView",
    "SavedGame",
    "Stage",
    "StageCommand",
    "StoryTree",
    "Turn",
    "open_game",
]
