"""Each trigger inside a real Trainer: the rows stored are exactly those of the steps Trainer's own
control flow reaches (DefaultFlowCallback decides evaluation, not the callback), each holding
the text greedy generation gives at that moment.

24 training rows in batches of 4: 6 optimizer steps per epoch, 12 in two epochs.
"""

from __future__ import annotations

from typing import Any, List, Optional

import transformers
from harness import Case, assert_rows, attach, expected_rows, step_epochs
from tiny_models import CausalLMDataset

# transformers 5 evaluates once more at max_steps when the step schedule did not land on it
# (trainer_callback.py, DefaultFlowCallback.on_step_end); 4.57 does not.
FINAL_EVALUATION = int(transformers.__version__.split(".")[0]) >= 5


def with_final(steps: List[int], last: int) -> List[int]:
    return steps + [last] if FINAL_EVALUATION and steps[-1] != last else steps


def run_trigger(
    case: Case, *, trigger: str, expect_steps: List[int], steps_per_epoch: int = 6, step_interval: Optional[int] = None,
    eval_dataset: Any = None, **args: Any,
) -> None:
    """Train with ``args``; the callback must have fired at exactly ``expect_steps``, and the server
    hold exactly their rows."""
    job = case.deploy(trigger=trigger, step_interval=step_interval)
    callback = case.callback(job, sample_frequency=trigger, step_interval=step_interval)
    trainer = case.trainer(eval_dataset=eval_dataset, **args)
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == expect_steps, f"fired at {run.recorder.fire_steps}"
    expected = expected_rows(callback.samples, run.recorder.references(), step_epochs(expect_steps, steps_per_epoch), trigger)
    assert_rows(case.user.rows(job.id), expected)


def test_eval_with_epoch_strategy(case: Case) -> None:
    run_trigger(case, trigger="eval", expect_steps=[6, 12], eval_strategy="epoch")


def test_eval_with_steps_strategy(case: Case) -> None:
    # 5, 10; and 12 on transformers 5 (its end-of-training evaluation).
    run_trigger(case, trigger="eval", expect_steps=with_final([5, 10], 12), eval_strategy="steps", eval_steps=5)


def test_eval_with_float_eval_steps(case: Case) -> None:
    # eval_steps=0.25 of max_steps=10 is ceil(2.5) = 3: 3, 6, 9; and 10 on transformers 5.
    run_trigger(case, trigger="eval", expect_steps=with_final([3, 6, 9], 10), eval_strategy="steps", eval_steps=0.25, max_steps=10)


def test_eval_with_eval_delay(case: Case) -> None:
    # Every 2 steps, but not before step 5.
    run_trigger(case, trigger="eval", expect_steps=[6, 8, 10, 12], eval_strategy="steps", eval_steps=2, eval_delay=5)


def test_eval_final_evaluation_at_max_steps(case: Case) -> None:
    # max_steps=8 is not a multiple of 3: transformers 5 evaluates at 8 as well, 4.57 does not.
    run_trigger(case, trigger="eval", expect_steps=with_final([3, 6], 8), eval_strategy="steps", eval_steps=3, max_steps=8)


def test_eval_with_a_dict_of_eval_datasets(case: Case) -> None:
    # on_evaluate runs once per dataset at the same step: one generation and one set of rows per step.
    datasets = {
        "colors": CausalLMDataset(case.eval_rows[:4], case.tokenizer),
        "rest": CausalLMDataset(case.eval_rows[4:], case.tokenizer),
    }
    run_trigger(case, trigger="eval", expect_steps=[6, 12], eval_strategy="epoch", eval_dataset=datasets)


def test_eval_trigger_under_gradient_accumulation(case: Case) -> None:
    # 6 batches per epoch, 2 per optimizer step: 3 optimizer steps per epoch.
    run_trigger(case, trigger="eval", expect_steps=[3, 6], steps_per_epoch=3, eval_strategy="epoch", gradient_accumulation_steps=2)


def test_epoch_trigger(case: Case) -> None:
    run_trigger(case, trigger="epoch", expect_steps=[6, 12], eval_strategy="no")


def test_epoch_trigger_with_max_steps_ending_in_a_partial_epoch(case: Case) -> None:
    # on_epoch_end runs for the partial second epoch too, at step 8.
    run_trigger(case, trigger="epoch", expect_steps=[6, 8], eval_strategy="no", max_steps=8)


def test_steps_trigger(case: Case) -> None:
    run_trigger(case, trigger="steps", expect_steps=[4, 8, 12], step_interval=4, eval_strategy="no")


def test_steps_trigger_counts_optimizer_steps_under_gradient_accumulation(case: Case) -> None:
    # 3 optimizer steps per epoch, 6 in all: every 2nd optimizer step, not every 2nd batch.
    run_trigger(
        case, trigger="steps", expect_steps=[2, 4, 6], steps_per_epoch=3, step_interval=2, eval_strategy="no",
        gradient_accumulation_steps=2,
    )
