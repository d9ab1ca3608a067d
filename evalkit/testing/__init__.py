"""Tiny random-weight models of the real architectures, for testing evalkit and your own plugins offline.

Each builder writes (once, into the evalkit cache) or returns a model in its real on-disk format, so the
code under test loads it through the same path as real weights. Their outputs are noise: they check
pipelines, never numbers.

    evalkit.testing.sd3        tiny_sd3_pipeline()            SD3 (MMDiT, CLIP x2, T5, VAE)   `--model tiny-sd3`
    evalkit.testing.bagel      random_pipeline(tiny_config())  BAGEL (MoT LLM, SigLIP, VAE)
    evalkit.testing.judges     tiny_qwen2vl_path()            Qwen2-VL judge                  `--judge tiny`
    evalkit.testing.rewards    tiny_pickscore(), tiny_hpsv3()  PickScore, HPSv3                `tiny=true`
    evalkit.testing.detection  tiny_mask2former_checkpoint(), tiny_clip()  GenEval's evaluators `--detector tiny`

Modules import torch and friends when imported; this package itself imports nothing heavy.
"""
