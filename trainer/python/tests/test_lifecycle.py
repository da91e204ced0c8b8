"""Outside one plain train(): a crash and a resume from a checkpoint, evaluate() after train(), a
second train(), load_best_model_at_end, and a job cancelled from the web app mid-run.

24 training rows in batches of 4: 6 optimizer steps per epoch, 12 in two epochs.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from harness import Case, assert_rows, attach, cancel_seen, expected_rows, pc, step_epochs
from server_api import User, wait_for
from transformers import TrainerCallback


class SimulatedCrash(Exception):
    pass


class CrashAt(TrainerCallback):
    """The pod dies at the end of a step (an OOM, a preempted node)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            raise SimulatedCrash(f"crashed at step {self.step}")


def test_resume_from_checkpoint_predicts_the_replayed_steps_again(case: Case) -> None:
    job = case.deploy(trigger="steps", step_interval=2, eval_strategy="no")
    settings = dict(eval_strategy="no", save_strategy="steps", save_steps=4)
    # First pod: a checkpoint every 4 steps; dies at the end of step 6 (after predicting it).
    first = case.callback(job, sample_frequency="steps", step_interval=2)
    trainer = case.trainer(**settings)
    first_run = attach(trainer, job, first, case.tokenizer)
    trainer.add_callback(CrashAt(6))
    with pytest.raises(SimulatedCrash):
        trainer.train()
    first.close()  # what atexit does as the process ends
    assert first_run.recorder.fire_steps == [2, 4, 6]

    # Second pod, same job and working directory: resumes from checkpoint-4, replays 5 and 6.
    second = case.callback(job, sample_frequency="steps", step_interval=2)
    trainer = case.trainer(**settings)
    second_run = attach(trainer, job, second, case.tokenizer)
    trainer.train(resume_from_checkpoint=os.path.join(case.output_dir(), "checkpoint-4"))
    assert second_run.recorder.fire_steps == [6, 8, 10, 12]

    # The replayed step holds the resumed run's text (replaced if it differs, a duplicate if not).
    references = {**first_run.recorder.references(), **second_run.recorder.references()}
    assert_rows(case.user.rows(job.id), expected_rows(second.samples, references, step_epochs([2, 4, 6, 8, 10, 12]), "steps"))
    assert case.user.job(job.id)["status"] == "completed"


def test_evaluate_after_train_is_stored(case: Case) -> None:
    # transformers' run_clm.py: no evaluation during training, trainer.evaluate() after it. (The
    # server refuses a job configured so, as its own trainer's trigger could never fire.)
    job = case.deploy(trigger="eval", eval_strategy="epoch")
    callback = case.callback(job, sample_frequency="eval")
    trainer = case.trainer(eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert run.recorder.fire_steps == []
    trainer.evaluate()
    assert run.recorder.fire_steps == [12]
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, run.recorder.references(), {12: 2}, "eval"))
    assert case.user.job(job.id)["status"] == "completed"


def test_a_second_train_replaces_the_first_runs_rows(case: Case) -> None:
    # A notebook cell run twice: global_step starts from 0 again, on the further trained model.
    job = case.deploy(trigger="epoch", eval_strategy="no")
    callback = case.callback(job, sample_frequency="epoch")
    trainer = case.trainer(eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    first = run.recorder.references()
    trainer.train()
    assert run.recorder.fire_steps == [6, 12, 6, 12]
    second = run.recorder.references()
    assert first != second, "the second run trained further: its text should differ (or this test proves nothing)"
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, second, {6: 1, 12: 2}, "epoch"))
    assert case.user.job(job.id)["status"] == "completed"


def test_load_best_model_at_end_keeps_every_evaluations_rows(case: Case) -> None:
    job = case.deploy(trigger="eval", eval_strategy="steps")
    callback = case.callback(job, sample_frequency="eval")
    trainer = case.trainer(
        eval_strategy="steps", eval_steps=3, save_strategy="steps", save_steps=3,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
    )
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.train()
    assert [fire.step for fire in run.recorder.fires if fire.event == "evaluate"] == [3, 6, 9, 12]
    at_evaluations = {fire.step: fire.texts for fire in run.recorder.fires if fire.event == "evaluate"}
    assert_rows(case.user.rows(job.id), expected_rows(callback.samples, at_evaluations, step_epochs([3, 6, 9, 12]), "eval"))


class CancelAt(TrainerCallback):
    """At the end of ``step``: once the server holds the rows made so far, cancel the job from the
    user's session (the web app's Cancel button) and wait until the callback has learnt it."""

    def __init__(self, user: User, job_id: str, callback: pc.PredictionsCallback, step: int, rows_before: int) -> None:
        self.user, self.job_id, self.callback, self.step, self.rows_before = user, job_id, callback, step, rows_before

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step:
            return
        wait_for(lambda: len(self.user.rows(self.job_id)) >= self.rows_before, f"{self.rows_before} rows stored before cancelling")
        assert self.user.cancel(self.job_id)["status"] == "cancelled"
        wait_for(lambda: cancel_seen(self.callback), "the callback to learn that the job was cancelled")


def test_cancel_mid_run_stops_training_at_the_next_step(case: Case) -> None:
    job = case.deploy(trigger="steps", step_interval=1, eval_strategy="no")
    callback = case.callback(job, sample_frequency="steps", step_interval=1)
    trainer = case.trainer(eval_strategy="no")
    run = attach(trainer, job, callback, case.tokenizer)
    trainer.add_callback(CancelAt(case.user, job.id, callback, step=3, rows_before=3 * len(callback.samples)))
    trainer.train()

    assert run.recorder.step_ends == [1, 2, 3, 4], "training must stop at the end of the step after the cancel was seen"
    assert trainer.state.global_step == 4
    assert run.recorder.fire_steps == [1, 2, 3, 4]
    expected = expected_rows(callback.samples, run.recorder.references(), step_epochs([1, 2, 3, 4]), "steps")
    # The rows made before the cancel are on the server; those of the last step are in the spool...
    assert_rows(case.user.rows(job.id), {key: row for key, row in expected.items() if key[1] <= 3})
    callback.close()
    # ...and the upload token the job page offers for an ended job, with `sync`, stores them.
    assert pc.sync(callback.spool.path, case.user.rotate_token(job.id)) == 0
    assert_rows(case.user.rows(job.id), expected)
    assert case.user.job(job.id)["status"] == "cancelled"
