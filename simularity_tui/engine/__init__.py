"""Talking to a model: llama.cpp in-process (and, later, remote servers). Knows nothing of stories."""

from .config import GenerationParams, ModelConfig, SamplingParams
from .prompt import Prompt
from .session import Generation, LlamaSession
from .worker import GenerationResult, ModelInfo, RestoredState

__all__ = [
    "Generation",
    "GenerationParams",
    "GenerationResult",
    "LlamaSession",
    "ModelConfig",
    "ModelInfo",
    "Prompt",
    "RestoredState",
    "SamplingParams",
]
