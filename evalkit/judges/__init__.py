"""MLLM judges: a local transformers VLM or an OpenAI-compatible HTTP server, behind one interface."""

from evalkit.judges.base import Judge, JudgeFailure

__all__ = ["Judge", "JudgeFailure"]
