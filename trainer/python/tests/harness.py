"""What every real-Trainer test does: build the callback for a job, watch what it generates, and
compare the rows the server stored with what greedy generation gives at that moment.

The oracle: ``GenerateSpy`` replaces ``model.generate`` on the model Trainer hands to callbacks
and counts the calls (nothing else in these runs generates: Trainer's evaluation only computes
the loss). ``ReferenceRecorder`` is added after the predictions callback, so at each event it
runs right after it, with the same weights: when the spy counted new calls, the callback just
fired, and the recorder generates the same prompts itself, one at a time, greedily, from
``input_ids`` and ``attention_mask`` only, decoding the new tokens (decoder-only) or the whole
decoder output (encoder-decoder). A stored prediction must equal that text.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch
from server_api import Job, Key, StoredRow, User
from tiny_models import CausalLMDataset, Row, gpt2
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast, Trainer, TrainerCallback, TrainingArguments

HERE = os.path.dirname(os.path.abspath(__file__))
# trainer/python: the callback as users copy it. PREDICTIONS_CALLBACK_DIR runs the suite against
# another copy (an older commit, a deliberately broken one) to watch the tests go red.
CALLBACK_DIR = os.environ.get("PREDICTIONS_CALLBACK_DIR") or os.path.dirname(HERE)
sys.path.insert(0, CALLBACK_DIR)

import predictions_callback  # noqa: E402

pc = predictions_callback  # the tests' name for the module under test

SAMPLE_COUNT = 3
MAX_NEW_TOKENS = 6


@dataclass
class GenerateCall:
    kwargs: List[str]
    batch_size: int
    attention_mask: Optional[torch.Tensor]


class GenerateSpy:
    """Counts the calls of ``model.generate`` (and what they were given); ``original`` is untouched."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.original: Callable[..., Any] = model.generate
        self.calls: List[GenerateCall] = []
        model.generate = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.calls.append(
            GenerateCall(
                kwargs=sorted(kwargs),
                batch_size=int(input_ids.shape[0]) if input_ids is not None else 0,
                attention_mask=mask.detach().clone() if isinstance(mask, torch.Tensor) else None,
            )
        )
        return self.original(*args, **kwargs)


def reference_generate(
    spy: GenerateSpy,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = MAX_NEW_TOKENS,
    truncate_to: Optional[int] = None,
) -> List[str]:
    """Greedy generation of each prompt alone: what the stored prediction must say."""
    model = spy.model
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    was_training = model.training
    model.eval()
    texts = []
    try:
        with torch.no_grad():
            for prompt in prompts:
                encoded = tokenizer(prompt, return_tensors="pt", return_token_type_ids=False)
                input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
                if truncate_to is not None:
                    input_ids, attention_mask = input_ids[:, -truncate_to:], attention_mask[:, -truncate_to:]
                output = spy.original(
                    input_ids=input_ids.to(model.device),
                    attention_mask=attention_mask.to(model.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=1,
                    pad_token_id=tokenizer.pad_token_id,
                    synced_gpus=False,  # this rank alone: never a collective, whatever the model is
                )
                tokens = output[0] if encoder_decoder else output[0][input_ids.shape[-1] :]
                texts.append(str(tokenizer.decode(tokens, skip_special_tokens=True)))
    finally:
        if was_training:
            model.train()
    return texts


@dataclass
class Fire:
    event: str
    step: int
    epoch: Optional[float]
    texts: List[Any]


class ReferenceRecorder(TrainerCallback):
    """Added after the predictions callback: records each of its fires and the reference texts."""

    def __init__(
        self,
        spy: GenerateSpy,
        tokenizer: PreTrainedTokenizerBase,
        prompts: Callable[[], List[str]],
        reference: Optional[Callable[[GenerateSpy, PreTrainedTokenizerBase, List[str]], List[Any]]] = None,
    ) -> None:
        self.spy = spy
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.reference = reference or (lambda spy, tokenizer, prompts: reference_generate(spy, tokenizer, prompts))
        self.fires: List[Fire] = []
        self.seen = 0
        self.last_step = 0
        self.step_ends: List[int] = []

    def _look(self, event: str, state: Any) -> None:
        self.last_step = int(state.global_step)
        if len(self.spy.calls) > self.seen:
            texts = self.reference(self.spy, self.tokenizer, self.prompts())
            self.fires.append(Fire(event, int(state.global_step), state.epoch, texts))
            self.seen = len(self.spy.calls)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.step_ends.append(int(state.global_step))
        self._look("step_end", state)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._look("evaluate", state)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._look("epoch_end", state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._look("train_end", state)

    @property
    def fire_steps(self) -> List[int]:
        return [fire.step for fire in self.fires]

    def references(self) -> Dict[int, List[str]]:
        """The latest reference per step (a replayed step is predicted again, and replaces)."""
        return {fire.step: fire.texts for fire in self.fires}


def epoch_of(step: int, steps_per_epoch: int) -> int:
    """The 1-based epoch an optimizer step falls in."""
    return max(1, math.ceil(step / steps_per_epoch))


def expected_rows(
    samples: Sequence[Mapping[str, str]], references: Mapping[int, List[str]], epochs: Mapping[int, int], trigger: str
) -> Dict[Key, StoredRow]:
    """The rows for ``epochs`` (step -> epoch), each sample predicted as the reference says."""
    rows: Dict[Key, StoredRow] = {}
    for step, epoch in epochs.items():
        assert step in references, f"the callback never generated at step {step} (it generated at {sorted(references)})"
        texts = references[step]
        for index, sample in enumerate(samples):
            rows[(epoch, step, index)] = StoredRow(trigger, sample["prompt"], sample["groundTruth"], texts[index])
    return rows


def assert_rows(stored: Mapping[Key, StoredRow], expected: Mapping[Key, StoredRow]) -> None:
    """The exact rows: the same keys, and in each the same trigger, prompt, ground truth and text."""
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    assert not missing and not extra, f"keys (epoch, step, sampleIndex): missing {missing}, unexpected {extra}"
    wrong = {key: (stored[key], expected[key]) for key in sorted(expected) if stored[key] != expected[key]}
    lines = [f"  {key}: {pair[0]}\n  {' ' * len(str(key))}  {pair[1]}" for key, pair in wrong.items()]
    assert not wrong, "rows differ (stored, then expected):\n" + "\n".join(lines)
    # The oracle is not vacuous: the model said something somewhere.
    assert any(row.prediction.strip() for row in expected.values()) or not expected, "every reference text is empty"


def training_args(output_dir: str, **overrides: Any) -> TrainingArguments:
    """Tiny, CPU-only, quiet, deterministic; 24 train rows in batches of 4: 6 optimizer steps per epoch."""
    return TrainingArguments(**training_settings(output_dir, **overrides))


def training_settings(output_dir: str, **overrides: Any) -> Dict[str, Any]:
    """The keyword arguments of ``training_args`` (for TrainingArguments subclasses such as TRL's SFTConfig)."""
    settings: Dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        num_train_epochs=2,
        learning_rate=2e-2,
        logging_steps=3,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    settings.update(overrides)
    return settings


def make_callback(
    job: Job, spool_dir: str, samples: Sequence[Mapping[str, Any]], tokenizer: Any = None, **overrides: Any
) -> pc.PredictionsCallback:
    settings: Dict[str, Any] = dict(
        tokenizer=tokenizer,
        sample_frequency="eval",
        sample_count=SAMPLE_COUNT,
        max_new_tokens=MAX_NEW_TOKENS,
        seed=0,
        spool_path=os.path.join(spool_dir, "predictions-spool.jsonl"),
        environ=dict(job.env),
        heartbeat_interval=0.2,
        probe_interval=0.5,
        install_handlers=False,
    )
    settings.update(overrides)
    return pc.PredictionsCallback(samples, **settings)


def sample_prompts(callback: pc.PredictionsCallback) -> List[str]:
    """The prompts the callback chose, in sampleIndex order."""
    return [str(sample["prompt"]) for sample in callback.samples]


def cancel_seen(callback: pc.PredictionsCallback) -> bool:
    """Whether the callback has learnt that its job was cancelled (the server refused it: job_ended).

    The one place the suite reads the callback's inner state: the test needs to know *when* it
    learnt, to check that training stops at the very next step. (Otherwise the suite uses the
    callback's surface: the constructor, ``samples``, ``spool.path``, ``close()`` and ``sync``.)
    """
    return bool(getattr(callback.writer, "cancelled", False))


@dataclass
class Run:
    """A test's run: its job, its callback and what the recorder saw."""

    job: Job
    callback: pc.PredictionsCallback
    spy: GenerateSpy
    recorder: ReferenceRecorder


def attach(
    trainer: Any,
    job: Job,
    callback: pc.PredictionsCallback,
    tokenizer: Any,
    prompts: Optional[Callable[[], List[str]]] = None,
    reference: Optional[Callable[[GenerateSpy, Any, List[str]], List[Any]]] = None,
) -> Run:
    """Add the callback, then the recorder after it, spying on the model Trainer gives callbacks."""
    spy = GenerateSpy(trainer.model)
    recorder = ReferenceRecorder(spy, tokenizer, prompts or (lambda: sample_prompts(callback)), reference)
    trainer.add_callback(callback)
    trainer.add_callback(recorder)
    return Run(job, callback, spy, recorder)


def step_epochs(steps: Sequence[int], steps_per_epoch: int = 6) -> Dict[int, int]:
    return {step: epoch_of(step, steps_per_epoch) for step in steps}


@dataclass
class Case:
    """One test's world: the session's server user, tokenizer and rows, its own directory, and the
    callbacks it made (closed after the test, whatever happened)."""

    name: str
    tmp_path: Path
    user: User
    tokenizer: PreTrainedTokenizerFast
    rows: List[Row]
    train_rows: List[Row]
    eval_rows: List[Row]
    callbacks: List[pc.PredictionsCallback] = field(default_factory=list)

    def deploy(self, *, trigger: str = "eval", step_interval: Optional[int] = None, eval_strategy: str = "epoch") -> Job:
        """A manual job of its own, named after the test (its job config says what it runs)."""
        return self.user.deploy(self.name, trigger=trigger, step_interval=step_interval, eval_strategy=eval_strategy)

    def callback(
        self, job: Job, samples: Optional[Sequence[Mapping[str, Any]]] = None, tokenizer: Any = None, **overrides: Any
    ) -> pc.PredictionsCallback:
        made = make_callback(
            job, str(self.tmp_path), self.eval_rows if samples is None else samples,
            self.tokenizer if tokenizer is None else tokenizer, **overrides,
        )
        self.callbacks.append(made)
        return made

    def output_dir(self) -> str:
        return str(self.tmp_path / "out")

    def trainer(self, model: Any = None, *, train_dataset: Any = None, eval_dataset: Any = None, **args: Any) -> Trainer:
        """A Trainer on the tiny GPT-2 (unless ``model``), the training rows and the held-out rows."""
        return Trainer(
            model=model if model is not None else gpt2(self.tokenizer),
            args=training_args(self.output_dir(), **args),
            train_dataset=train_dataset if train_dataset is not None else CausalLMDataset(self.train_rows, self.tokenizer),
            eval_dataset=eval_dataset if eval_dataset is not None else CausalLMDataset(self.eval_rows, self.tokenizer),
            processing_class=self.tokenizer,
        )

    def close(self) -> None:
        for made in self.callbacks:
            made.close(timeout=10)
