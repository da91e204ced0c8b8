"""Issue 14's bugs, one test each, in a real Trainer against the real server.

A test marked ``xfail(strict=True, raises=...)`` reproduces a bug still present: the suite is
green while the bug is there (failing for the stated reason only) and turns red (XPASS) the
moment a fix lands. Whoever fixes one removes its mark. B1 (ZeRO-3 / FSDP) and B2 (a cancel
under DDP) need two processes: they are in test_ddp.py.

Unless a test says otherwise: a tiny GPT-2 (2 layers, 32 wide, word-level tokenizer trained on
the suite's 48 questions), 24 training rows in batches of 4 (6 steps per epoch), 3 samples,
max_new_tokens=6, generation_config.min_new_tokens=4.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
import transformers
from harness import CALLBACK_DIR, Case, GenerateSpy, assert_rows, attach, expected_rows, reference_generate, step_epochs
from test_integrations import chat_prompt
from tiny_models import Seq2SeqDataset, build_tokenizer, gpt2, llama, t5, to_messages


def bug(reason: str, *raises: type) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=raises or AssertionError, reason=f"issue 14: {reason}")


def test_b4_encoder_decoder_prediction_is_the_whole_answer(case: Case) -> None:
    # Tiny T5 (2+2 layers, d_model 32), epoch trigger, 2 epochs. generate() returns the decoder
    # sequence only (start token + up to 6 tokens); the callback drops its first len(prompt)
    # tokens (5 or 6 here): the answer "red word word word" is stored as "".
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, sample_frequency="epoch")
    trainer = case.trainer(t5(case.tokenizer), train_dataset=Seq2SeqDataset(case.train_rows, case.tokenizer), eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "epoch"))


def test_tokenizer_with_token_type_ids_and_a_model_without_them(case: Case) -> None:
    # Tiny Llama (its forward takes no token_type_ids) and a tokenizer that returns them
    # (BERT-style model_input_names; on 4.57 every PreTrainedTokenizerFast does by default). Each
    # fire logs "generation failed at step 6 (epoch): ValueError: The following `model_kwargs` are
    # not used by the model: ['token_type_ids']" and nothing is stored.
    tokenizer = build_tokenizer(case.rows, model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    assert "token_type_ids" in tokenizer("what color is the sky ?")
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, tokenizer=tokenizer, sample_frequency="epoch")
    trainer = case.trainer(llama(tokenizer), eval_strategy="no")
    run = attach(trainer, job, callback, tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "epoch"))


def test_greedy_decoding_even_when_the_generation_config_samples(case: Case) -> None:
    # GPT-2 whose generation_config says do_sample=True, temperature=5 (many chat checkpoints ship
    # sampling on): the stored text is a random draw ("orange is quack closed cow color") where
    # greedy decoding says "of of the the the the", so epochs cannot be compared.
    model = gpt2(case.tokenizer)
    model.generation_config.do_sample = True
    model.generation_config.temperature = 5.0
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, sample_frequency="epoch")
    trainer = case.trainer(model, eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "epoch"))


@pytest.mark.parametrize("layout", ["messages", "prompt-completion"])
def test_conversational_samples_use_the_chat_template(layout: str, case: Case) -> None:
    # Samples as TRL takes them: {"messages": [system, user, assistant]}, or {"prompt": [system,
    # user], "completion": [assistant]}. Today the first raises KeyError('prompt') when the
    # callback is built; the second predicts from the Python repr "[{'role': 'system', ..." and
    # stores that repr as prompt and ground truth. Expected: the prompt is the conversation
    # before the answer rendered with the tokenizer's chat template (add_generation_prompt=True),
    # the ground truth the answer's text.
    conversations = [to_messages(row)["messages"] for row in case.eval_rows[:3]]
    if layout == "messages":
        samples: List[Dict[str, Any]] = [{"messages": messages} for messages in conversations]
    else:
        samples = [{"prompt": messages[:-1], "completion": messages[-1:]} for messages in conversations]
    rendered = [chat_prompt(case.tokenizer, messages[:-1]) for messages in conversations]
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, samples, sample_frequency="epoch")
    trainer = case.trainer(eval_strategy="no", num_train_epochs=1)
    # The recorder predicts every rendered conversation; stored rows are matched by their answer,
    # so nothing here presumes how the callback shows a conversation in its prompt column.
    run = attach(trainer, job, callback, case.tokenizer, prompts=lambda: rendered)
    trainer.train()
    assert run.recorder.fire_steps == [6]
    stored = case.user.rows(job.id)
    assert sorted(stored) == [(1, 6, 0), (1, 6, 1), (1, 6, 2)]
    by_answer = {messages[-1]["content"]: index for index, messages in enumerate(conversations)}
    for row in stored.values():
        assert row.ground_truth in by_answer, f"ground truth {row.ground_truth!r} is not the answer's text"
        index = by_answer[row.ground_truth]
        assert conversations[index][1]["content"] in row.prompt and not row.prompt.startswith("[{"), row.prompt
        assert row.prediction == run.recorder.fires[0].texts[index]


def test_prompt_longer_than_the_context_is_truncated(case: Case) -> None:
    # GPT-2 with n_positions=32 and prompts of 49 tokens (7 filler questions, then the question):
    # generate() fails with "IndexError: index out of range in self" (position embeddings), the
    # fire is logged as "generation failed" and nothing is stored. Expected: a generation from
    # the end of the prompt, with room for max_new_tokens, and the whole prompt stored.
    filler = "what color is the sky ? " * 7
    samples = [{"prompt": filler + row["prompt"], "completion": row["completion"]} for row in case.eval_rows[:3]]
    room = 32 - 6
    assert all(len(case.tokenizer(sample["prompt"])["input_ids"]) > 32 for sample in samples)

    def every_truncation(spy: GenerateSpy, tokenizer: Any, prompts: List[str]) -> List[Set[str]]:
        # Any end of the prompt that leaves room for the answer is a fair truncation.
        candidates: List[Set[str]] = [set() for _ in prompts]
        for keep in range(1, room + 1):
            for index, text in enumerate(reference_generate(spy, tokenizer, prompts, truncate_to=keep)):
                candidates[index].add(text)
        return candidates

    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, samples, sample_frequency="epoch")
    trainer = case.trainer(gpt2(case.tokenizer, n_positions=32), eval_strategy="no", num_train_epochs=1)
    run = attach(trainer, job, callback, case.tokenizer, reference=every_truncation)
    trainer.train()
    assert run.recorder.fire_steps == [6]
    stored = case.user.rows(job.id)
    assert sorted(stored) == [(1, 6, 0), (1, 6, 1), (1, 6, 2)]
    for index, sample in enumerate(callback.samples):
        row = stored[(1, 6, index)]
        assert (row.prompt, row.ground_truth) == (sample["prompt"], sample["groundTruth"])
        assert row.prediction in run.recorder.fires[0].texts[index], f"{row.prediction!r} is no generation from the end of the prompt"


def test_generation_is_batched_with_left_padding(case: Case) -> None:
    # Three prompts of 5, 6 and 2 tokens: today each fire calls generate() three times with a
    # batch of one. Expected: one call per fire with the three prompts, padded on the left (a
    # decoder-only model continues from the last position), giving the same text as alone.
    samples = [
        {"prompt": "the opposite of hot is", "completion": "cold"},
        {"prompt": "what color is the sky ?", "completion": "blue"},
        {"prompt": "dog ?", "completion": "woof"},
    ]
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, samples, sample_frequency="epoch")
    trainer = case.trainer(eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "epoch"))
    assert [call.batch_size for call in run.spy.calls] == [3, 3], "one generate() call per fire, every prompt in it"
    for call in run.spy.calls:
        mask = call.attention_mask
        assert mask is not None and bool((mask[:, -1] == 1).all()) and not bool(mask.all()), f"left padding expected, mask {mask}"


def test_best_model_predictions_are_recorded_at_its_step(case: Case) -> None:
    # Evaluate and save every 2 steps, sample at each epoch end (steps 6 and 12). The best
    # checkpoint (greater_is_better=True on eval_loss: the earliest, step 2) is loaded at the end,
    # and no row says what that model predicts: rows exist at steps 6 and 12 only. Expected: rows
    # at the best step with the loaded model's text, the others untouched.
    job = case.deploy(trigger="epoch", eval_strategy="steps")
    callback = case.callback(job, sample_frequency="epoch")
    trainer = case.trainer(
        eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=True,
    )
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    best_step = int(str(trainer.state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[1])
    assert best_step not in (6, 12), f"the best checkpoint is at step {best_step}: pick settings where it is not an epoch end"
    at_epoch_ends = {fire.step: fire.texts for fire in run.recorder.fires if fire.event == "epoch_end"}
    expected = expected_rows(callback.samples, at_epoch_ends, step_epochs([6, 12]), "epoch")
    best_texts = reference_generate(run.spy, case.tokenizer, [sample["prompt"] for sample in callback.samples])
    stored = case.user.rows(job.id)
    best_epoch = step_epochs([best_step])[best_step]
    for index, sample in enumerate(callback.samples):
        key = (best_epoch, best_step, index)
        assert key in stored, f"no row at the best step {best_step} (rows at steps {sorted({k[1] for k in stored})})"
        row = stored.pop(key)
        assert (row.prompt, row.ground_truth, row.prediction) == (sample["prompt"], sample["groundTruth"], best_texts[index])
    assert_rows(stored, expected)


def test_callback_is_a_trainer_callback(case: Case) -> None:
    assert isinstance(case.callback(case.deploy()), transformers.TrainerCallback)


def test_pip_install_gives_the_predictions_sync_command(tmp_path: Path) -> None:
    # `pip install ./trainer/python` (from a copy, so no build output lands in the working tree;
    # ci-hf.sh points pip at the local indexes for the build backend), `predictions-sync --help`,
    # and the installed package carries its py.typed marker.
    source = tmp_path / "src"
    shutil.copytree(CALLBACK_DIR, source, ignore=shutil.ignore_patterns("tests", "__pycache__", ".venv", "*.pyc", "predictions-spool*"))
    prefix = tmp_path / "prefix"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--prefix", str(prefix), str(source)], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    site = next(prefix.glob("lib/python*/site-packages"))
    assert list(site.rglob("py.typed")), "no py.typed marker installed"
    command = subprocess.run(
        [str(prefix / "bin" / "predictions-sync"), "--help"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert command.returncode == 0 and "sync" in command.stdout.lower(), command.stdout + command.stderr
