"""Simularity TUI: a terminal engine for AI-driven visual novels on llama.cpp.

Rooms (imports point one way: ui -> story -> engine; scenario is pure data):
  scenario/  the pack format
  engine/    talking to a model (knows nothing of stories)
  story/     the simulation, headless
  ui/        the Textual app
  host/      SSH hosting
"""

__version__ = "0.1.0"
