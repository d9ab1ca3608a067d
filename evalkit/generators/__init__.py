"""Generator adapters: every model evalkit evaluates turns GenerationRequests into Generations."""

from evalkit.generators.base import Generation, GenerationRequest, Generator

__all__ = ["Generation", "GenerationRequest", "Generator"]
