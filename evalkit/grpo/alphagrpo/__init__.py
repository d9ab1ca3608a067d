"""AlphaGRPO: GRPO over BAGEL's hybrid trajectory (think text, then the flow-matching image path).

Modules, one purpose each:

* `sampling`   - shifted schedule, SDE window, the BAGEL `sde_step` and the SDE/ODE rollout loop;
* `textlp`     - packing of think texts and their per-token log-probs / entropies;
* `losses`     - the image (Flow-GRPO) and text (GSPO-style) policy losses;
* `advantages` - per-prompt group advantages as the official `compute_advantages`;
* `rewards`    - think-format rewards, reward combination and the RT2I / SRR (FPR) post-processing;
* `config`     - the official presets (YAML), `--set key=value` overrides and derived values.

Numbers follow the official release (JunyiWuCode/AlphaGRPO @ 1f604ff); the parity fixtures under
`shared/fixtures/alphagrpo/` were produced by running the official functions.
"""
