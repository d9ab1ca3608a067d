"""Qwen2 byte-level BPE tokenizer with BAGEL's segment conventions.

We read `tokenizer.json` with the `tokenizers` library directly: the released folder's `config.json` is a
placeholder that is not valid JSON, which breaks `AutoTokenizer` in transformers 5.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

BOS, EOS = "<|im_start|>", "<|im_end|>"
START_OF_IMAGE, END_OF_IMAGE = "<|vision_start|>", "<|vision_end|>"


class BagelTokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        ids = {name: tokenizer.token_to_id(name) for name in (BOS, EOS, START_OF_IMAGE, END_OF_IMAGE)}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise ValueError(f"tokenizer lacks BAGEL special tokens {missing}")
        self.bos, self.eos = ids[BOS], ids[EOS]
        self.start_of_image, self.end_of_image = ids[START_OF_IMAGE], ids[END_OF_IMAGE]

    @classmethod
    def from_folder(cls, folder: str | Path) -> BagelTokenizer:
        return cls(Tokenizer.from_file(str(Path(folder) / "tokenizer.json")))

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def segment(self, text: str) -> list[int]:
        """Every text input is its own `<|im_start|> text <|im_end|>` segment."""
        return [self.bos, *self.encode(text), self.eos]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def split_generated(self, ids: list[int]) -> str:
        """Decoded text between the leading `<|im_start|>` and any `<|im_end|>` (official post-processing)."""
        text = self.decode(ids).split(EOS)[0]
        parts = text.split(BOS)
        return parts[1] if len(parts) > 1 else parts[0]
