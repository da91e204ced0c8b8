"""Tiny models, tokenizers and datasets for the real-Trainer suite: nothing is downloaded.

Models are built from configs with random weights; the tokenizer is a word-level one trained
here, on the suite's dataset, with ``tokenizers``. Everything is seeded, so the DDP script (a
separate process) builds the same model as the test that launched it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

Row = Dict[str, str]

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
# A template small enough to read: TRL's SFTTrainer and the callback's chat support both need one.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }} : {{ message['content'] }} {{ eos_token }} {% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)

_COLORS = [
    ("sky", "blue"), ("grass", "green"), ("snow", "white"), ("coal", "black"), ("blood", "red"),
    ("sun", "yellow"), ("orange", "orange"), ("violet", "purple"), ("cloud", "grey"), ("leaf", "green"),
    ("lemon", "yellow"), ("tomato", "red"), ("ocean", "blue"), ("chalk", "white"), ("night", "black"),
    ("plum", "purple"),
]
_SOUNDS = [
    ("dog", "woof"), ("cat", "meow"), ("cow", "moo"), ("duck", "quack"), ("sheep", "baa"), ("owl", "hoot"),
    ("lion", "roar"), ("snake", "hiss"), ("horse", "neigh"), ("pig", "oink"), ("frog", "croak"), ("bee", "buzz"),
    ("mouse", "squeak"), ("wolf", "howl"), ("crow", "caw"), ("goat", "bleat"),
]
_OPPOSITES = [
    ("hot", "cold"), ("up", "down"), ("big", "small"), ("fast", "slow"), ("light", "dark"), ("early", "late"),
    ("open", "closed"), ("full", "empty"), ("wet", "dry"), ("hard", "soft"), ("loud", "quiet"), ("old", "new"),
    ("rich", "poor"), ("high", "low"), ("near", "far"), ("thick", "thin"),
]


def dataset_rows() -> List[Row]:
    """48 prompt/completion rows, interleaved so any slice mixes the three kinds of question."""
    kinds = [
        [{"prompt": f"what color is the {thing} ?", "completion": color} for thing, color in _COLORS],
        [{"prompt": f"what does the {animal} say ?", "completion": sound} for animal, sound in _SOUNDS],
        [{"prompt": f"the opposite of {word} is", "completion": other} for word, other in _OPPOSITES],
    ]
    return [kind[i] for i in range(16) for kind in kinds]


def split_rows(rows: Sequence[Row], train: int = 24, evaluation: int = 8) -> tuple[List[Row], List[Row]]:
    return list(rows[:train]), list(rows[train : train + evaluation])


def to_messages(row: Row) -> Dict[str, List[Dict[str, str]]]:
    """A row in the conversational format of TRL and of most fine-tuning datasets today."""
    return {
        "messages": [
            {"role": "system", "content": "answer in one word"},
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["completion"]},
        ]
    }


def build_tokenizer(rows: Sequence[Row], *, model_input_names: Optional[List[str]] = None) -> PreTrainedTokenizerFast:
    """A word-level tokenizer trained on the rows (every word of them, plus the chat words)."""
    backend = Tokenizer(models.WordLevel(unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    words = [f"{row['prompt']} {row['completion']}" for row in rows]
    words.append("system user assistant : answer in one word")
    backend.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=[PAD, UNK, BOS, EOS], min_frequency=1))
    extra: Dict[str, Any] = {}
    if model_input_names is not None:
        extra["model_input_names"] = model_input_names
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS, **extra)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _ids(tokenizer: PreTrainedTokenizerFast) -> tuple[int, int, int]:
    """(pad, bos, eos) of the tokenizer."""
    return int(tokenizer.pad_token_id), int(tokenizer.bos_token_id), int(tokenizer.eos_token_id)


# A model this small and this briefly trained answers [EOS] first, and an empty prediction
# proves nothing about decoding: the first few new tokens may not end the answer.
MIN_NEW_TOKENS = 4


def _finish(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    # A config built from scratch carries GPT-2's ids (50256...); generation must use ours.
    pad, bos, eos = _ids(tokenizer)
    generation = model.generation_config
    generation.pad_token_id, generation.bos_token_id, generation.eos_token_id = pad, bos, eos
    if model.config.is_encoder_decoder:
        generation.decoder_start_token_id = pad  # T5 starts its decoder from the pad token
    generation.min_new_tokens = MIN_NEW_TOKENS
    return model


def gpt2(tokenizer: PreTrainedTokenizerFast, *, seed: int = 0, n_positions: int = 64) -> PreTrainedModel:
    """A 2-layer, 32-wide GPT-2-style decoder."""
    torch.manual_seed(seed)
    pad, bos, eos = _ids(tokenizer)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
        pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
    )
    return _finish(GPT2LMHeadModel(config), tokenizer)


def llama(tokenizer: PreTrainedTokenizerFast, *, seed: int = 0) -> PreTrainedModel:
    """A 2-layer Llama: a decoder whose forward takes no token_type_ids."""
    torch.manual_seed(seed)
    pad, bos, eos = _ids(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=pad, bos_token_id=bos, eos_token_id=eos,
    )
    return _finish(LlamaForCausalLM(config), tokenizer)


def t5(tokenizer: PreTrainedTokenizerFast, *, seed: int = 0) -> PreTrainedModel:
    """A 2+2-layer T5 (encoder-decoder), 32 wide."""
    torch.manual_seed(seed)
    pad, _, eos = _ids(tokenizer)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
        pad_token_id=pad, eos_token_id=eos,
    )
    config.decoder_start_token_id = pad
    return _finish(T5ForConditionalGeneration(config), tokenizer)


class CausalLMDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``prompt completion [EOS]`` padded to a fixed length, loss on every real token."""

    def __init__(self, rows: Sequence[Row], tokenizer: PreTrainedTokenizerFast, length: int = 16) -> None:
        self.items: List[Dict[str, torch.Tensor]] = []
        for row in rows:
            text = f"{row['prompt']} {row['completion']} {EOS}"
            encoded = tokenizer(text, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
            input_ids = encoded["input_ids"][0]
            attention_mask = encoded["attention_mask"][0]
            labels = input_ids.clone()
            labels[attention_mask == 0] = -100
            self.items.append({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.items[index]


class Seq2SeqDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Prompt into the encoder, completion (with [EOS]) as labels for the decoder."""

    def __init__(self, rows: Sequence[Row], tokenizer: PreTrainedTokenizerFast, length: int = 12) -> None:
        self.items: List[Dict[str, torch.Tensor]] = []
        for row in rows:
            source = tokenizer(row["prompt"], padding="max_length", max_length=length, truncation=True, return_tensors="pt")
            target = tokenizer(f"{row['completion']} {EOS}", padding="max_length", max_length=4, truncation=True, return_tensors="pt")
            labels = target["input_ids"][0].clone()
            labels[target["attention_mask"][0] == 0] = -100
            self.items.append({"input_ids": source["input_ids"][0], "attention_mask": source["attention_mask"][0], "labels": labels})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return self.items[index]


def write_jsonl(rows: Sequence[Dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as source:
        return [json.loads(line) for line in source if line.strip()]
