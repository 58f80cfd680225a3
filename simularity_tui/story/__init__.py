"""The simulation: what is said, by whom, and the prompt that carries it. Drives the engine; knows
nothing of the screen, so it runs headless (tests, benchmarks, `simularity run`)."""

from .playthrough import Line, Playthrough, Reply

__all__ = ["Line", "Playthrough", "Reply"]
