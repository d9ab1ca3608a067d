"""Training refuses rewards that cannot score its prompts, and epochs where every rollout abstained (issue 12)."""

from __future__ import annotations

import pytest

from evalkit.errors import EvalkitError


def test_training_refuses_dvreward_without_questions_and_an_all_abstaining_epoch(tmp_path) -> None:
    from test_grpo_trainer import PROMPTS, tiny_config

    from evalkit.grpo.trainer import GRPOTrainer
    from evalkit.rewards.dvreward import DVReward
    from evalkit.testing.sd3 import tiny_sd3_pipeline

    class NoJudge:  # never asked: the trainer refuses before the first rollout
        def config(self):
            return {}

    config = tiny_config(tmp_path, rewards={"dvreward": 1.0})
    with pytest.raises(EvalkitError, match=f"no questions for {len(PROMPTS)} of {len(PROMPTS)} prompts"):
        GRPOTrainer(config, tiny_sd3_pipeline(), {"dvreward": DVReward(NoJudge())}, PROMPTS)

    class Abstains:
        name = "abstains"

        def score(self, images, prompts, metadata):
            return [None for _ in images]

    config = tiny_config(tmp_path, rewards={"abstains": 1.0}, save_freq=1)
    trainer = GRPOTrainer(config, tiny_sd3_pipeline(), {"abstains": Abstains()}, PROMPTS)
    with pytest.raises(EvalkitError, match="abstained on all 8 rollouts"):
        trainer.train(1)
    assert not (tmp_path / "run" / "checkpoints").exists()  # no untrained LoRA saved as if trained
