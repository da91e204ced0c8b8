"""The callback with what people fine-tune with: a PEFT LoRA adapter, TRL's SFTTrainer on a
conversational dataset, and an encoder-decoder model (T5).

24 training rows in batches of 4: 6 optimizer steps per epoch, 12 in two epochs.
"""

from __future__ import annotations

from typing import Any, Dict, List

from conftest import needs
from harness import Case, assert_rows, attach, expected_rows, step_epochs, training_settings
from tiny_models import Row, Seq2SeqDataset, gpt2, t5, to_messages
from transformers import Trainer


@needs("peft")
def test_peft_lora_adapter(case: Case) -> None:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    job = case.deploy(trigger="eval")
    callback = case.callback(job)
    # The PeftModel is what Trainer hands to callbacks: generation goes through the adapter.
    trainer = case.trainer(get_peft_model(gpt2(case.tokenizer), lora), eval_strategy="epoch", learning_rate=5e-2)
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "eval"))


def chat_prompt(tokenizer: Any, messages: List[Dict[str, str]]) -> str:
    """The conversation before the answer, as the model sees it in training."""
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


@needs("trl")
def test_trl_sft_trainer_on_a_conversational_dataset(case: Case) -> None:
    # SFTTrainer trains on `messages` rendered with the chat template. The callback gets the same
    # conversations rendered by hand (it cannot take `messages` itself yet: test_issue14_bugs.py).
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    def conversations(rows: List[Row]) -> Dataset:
        return Dataset.from_list([to_messages(row) for row in rows])

    samples = [
        {"prompt": chat_prompt(case.tokenizer, to_messages(row)["messages"][:-1]), "completion": row["completion"]}
        for row in case.eval_rows
    ]
    job = case.deploy(trigger="eval")
    callback = case.callback(job, samples)
    # TRL's defaults, bar bf16 (CPU); gradient checkpointing stays on, as SFTConfig sets it.
    config = SFTConfig(**training_settings(case.output_dir(), eval_strategy="epoch", bf16=False, max_length=32))
    trainer = SFTTrainer(
        model=gpt2(case.tokenizer),
        args=config,
        train_dataset=conversations(case.train_rows),
        eval_dataset=conversations(case.eval_rows),
        processing_class=case.tokenizer,
    )
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "eval"))


def test_t5_encoder_decoder_rows_at_each_epoch(case: Case) -> None:
    # The keys, prompts and ground truths; what T5's rows say is test_issue14_bugs.py's (B4).
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, sample_frequency="epoch")
    trainer: Trainer = case.trainer(t5(case.tokenizer), train_dataset=Seq2SeqDataset(case.train_rows, case.tokenizer), eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == [6, 12]
    stored = case.user.rows(job.id)
    expected = expected_rows(callback.samples, run.recorder.references(), step_epochs([6, 12]), "epoch")
    assert sorted(stored) == sorted(expected)
    for key, row in expected.items():
        assert (stored[key].trigger, stored[key].prompt, stored[key].ground_truth) == (row.trigger, row.prompt, row.ground_truth)
