"""DVReward (decompositional verifiable reward): prompts -> yes/no questions -> MLLM verification -> reward.

    decompositions = read_jsonl("questions.jsonl")            # AlphaGRPO format (format.py)
    result = verify(judge, image, decompositions[0])          # reward, SC, PQ, per-question details
    Decomposer(load_judge("openai:gpt-4.1", url=...)).decompose("a red cat on a blue sofa")

Importing this package loads no model and no torch.
"""

from evalkit.dvreward.decompose import Decomposer
from evalkit.dvreward.format import (
    QUALITY_ASPECTS,
    SEMANTIC_TAGS,
    Decomposition,
    Question,
    index_by_prompt,
    read_jsonl,
    write_jsonl,
)
from evalkit.dvreward.fpr import Rectified, rectify
from evalkit.dvreward.verify import (
    METHODS,
    VERIFIER_SYSTEM_PROMPT,
    QuestionScore,
    Verification,
    aggregate,
    verify,
)

__all__ = [
    "METHODS",
    "QUALITY_ASPECTS",
    "SEMANTIC_TAGS",
    "VERIFIER_SYSTEM_PROMPT",
    "Decomposer",
    "Decomposition",
    "Question",
    "QuestionScore",
    "Rectified",
    "Verification",
    "aggregate",
    "index_by_prompt",
    "read_jsonl",
    "rectify",
    "verify",
    "write_jsonl",
]
