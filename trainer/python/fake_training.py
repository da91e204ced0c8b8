"""A tiny stand-in for Hugging Face ``Trainer`` that drives ``PredictionsCallback``.

It calls the callback events in Trainer's order, with Trainer's arithmetic: ``global_step`` is
incremented before ``on_step_end``, ``state.epoch`` is fractional (``epoch + (step + 1) /
steps_in_epoch``), step-based evaluation runs right after ``on_step_end`` when
``global_step % eval_steps == 0``, epoch evaluation right after ``on_epoch_end``, and a dict of
eval datasets calls ``on_evaluate`` once per dataset. Callbacks get ``model`` and
``processing_class`` as Trainer passes them (None unless given: ``generate_fn`` echoes), and
``state.log_history`` an entry per logged step. ``best_step`` plays ``load_best_model_at_end``:
the checkpoint of that step is "loaded" before ``on_train_end``, as Trainer does.

Used by the unittest suite (``run_fake_training``) and, as a script, by the vitest integration
test against the real server (env ``JOB_ID``, ``JOB_TOKEN``, ``API_URL``)::

    python3 fake_training.py --epochs 3 --steps-per-epoch 4 --eval-strategy steps --eval-steps 3

``--step-seconds`` makes each step take that long and ``--print-steps`` prints ``step N`` to
stdout once the callback has returned from that step (its rows, if any, are generated and on
disk by then): the kill -9 tests read it to know what was generated before the kill.

``--scenario FILE`` (JSON, written by trainer/clients.test.ts) replaces the echo and the
constant loss with what a real model and Trainer produce: ``outputs`` (the completion of the
sample at each index) and ``logs`` (``{step: logs}`` for ``on_log``, where a value may be
``"NaN"``, ``"Infinity"`` or ``"-Infinity"``, since the file itself is JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from predictions_callback import TRIGGERS, PredictionsCallback  # noqa: E402


def fake_generate(prompts: List[str]) -> List[str]:
    return [f"prediction for {prompt}" for prompt in prompts]


def make_samples(count: int) -> List[Dict[str, str]]:
    return [{"prompt": f"question {i}", "completion": f"answer {i}"} for i in range(count)]


def run_fake_training(
    callback: Any,
    *,
    epochs: int,
    steps_per_epoch: int,
    eval_strategy: str = "no",
    eval_steps: Optional[int] = None,
    eval_datasets: int = 1,
    world_process_zero: bool = True,
    end_training: bool = True,
    logs_at: Callable[[int], Mapping[str, Any]] = lambda step: {"loss": 1.0},
    step_seconds: float = 0.0,
    after_step: Callable[[int], None] = lambda step: None,
    model: Any = None,
    processing_class: Any = None,
    best_step: Optional[int] = None,
    args: Optional[SimpleNamespace] = None,
) -> SimpleNamespace:
    """Drive ``callback`` through a whole run and return the final state."""
    args = args or SimpleNamespace(eval_strategy=eval_strategy, eval_steps=eval_steps, num_train_epochs=epochs)
    args.load_best_model_at_end = best_step is not None
    state = SimpleNamespace(
        epoch=0.0,
        global_step=0,
        max_steps=epochs * steps_per_epoch,
        is_world_process_zero=world_process_zero,
        is_local_process_zero=world_process_zero,
        log_history=[],
        best_model_checkpoint=None,
        best_global_step=None,
        best_metric=None,
    )
    control = SimpleNamespace(should_training_stop=False, should_evaluate=False)
    kwargs = {"model": model, "processing_class": processing_class}

    def evaluate() -> None:
        # A dict of eval datasets: one evaluation, hence one on_evaluate, per dataset.
        for _ in range(eval_datasets):
            callback.on_evaluate(args, state, control, metrics={"eval_loss": 1.0}, **kwargs)

    callback.on_init_end(args, state, control, **kwargs)
    callback.on_train_begin(args, state, control, **kwargs)
    for epoch in range(epochs):
        callback.on_epoch_begin(args, state, control, **kwargs)
        for step in range(steps_per_epoch):
            callback.on_step_begin(args, state, control, **kwargs)
            if step_seconds:
                time.sleep(step_seconds)  # the optimizer step a real run would spend time on
            state.global_step += 1
            state.epoch = epoch + (step + 1) / steps_per_epoch
            callback.on_step_end(args, state, control, **kwargs)
            logs = {**logs_at(state.global_step), "epoch": state.epoch}
            state.log_history.append({**logs, "step": state.global_step})
            callback.on_log(args, state, control, logs=logs, **kwargs)
            if eval_strategy == "steps" and eval_steps and state.global_step % eval_steps == 0:
                evaluate()
            after_step(state.global_step)
            if control.should_training_stop:
                break
        callback.on_epoch_end(args, state, control, **kwargs)
        if eval_strategy == "epoch":
            evaluate()
        if control.should_training_stop:
            break
    if end_training:
        if best_step is not None:
            # Trainer records the best checkpoint when it saves, and loads it after the loop.
            state.best_model_checkpoint = f"output/checkpoint-{best_step}"
            state.best_global_step = best_step
            state.best_metric = 0.5
        callback.on_train_end(args, state, control, **kwargs)
    return state


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=4)
    parser.add_argument("--eval-strategy", choices=["no", "epoch", "steps"], default="steps")
    parser.add_argument("--eval-steps", type=int, default=3)
    parser.add_argument("--eval-datasets", type=int, default=2)
    parser.add_argument("--sample-frequency", choices=list(TRIGGERS), default="eval")
    parser.add_argument("--step-interval", type=int, default=None)
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--sample-count", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--spool", default=None)
    parser.add_argument("--heartbeat-interval", type=float, default=0.5)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--print-steps", action="store_true", help="print 'step N' once each step's callbacks returned")
    parser.add_argument("--http-timeout", type=float, default=15.0)
    parser.add_argument("--exit-timeout", type=float, default=30.0)
    parser.add_argument("--scenario", default=None, help="JSON with the model's outputs and Trainer's logs per step")
    options = parser.parse_args(argv)
    generate = fake_generate
    logs_at: Callable[[int], Mapping[str, Any]] = lambda step: {"loss": 1.0}  # noqa: E731
    if options.scenario:
        with open(options.scenario, encoding="utf-8") as handle:
            scenario = json.load(handle)
        outputs: List[str] = scenario["outputs"]
        generate = lambda prompts: [outputs[i % len(outputs)] for i in range(len(prompts))]  # noqa: E731
        logs = {int(step): {name: float(v) if isinstance(v, str) else v for name, v in values.items()} for step, values in scenario["logs"].items()}
        logs_at = lambda step: logs.get(step, {})  # noqa: E731

    callback = PredictionsCallback(
        make_samples(options.samples),
        sample_frequency=options.sample_frequency,
        step_interval=options.step_interval,
        sample_count=options.sample_count,
        seed=options.seed,
        generate_fn=generate,
        spool_path=options.spool,
        heartbeat_interval=options.heartbeat_interval,
        probe_interval=1.0,
        backoff_base=0.05,
        http_timeout=options.http_timeout,
        exit_timeout=options.exit_timeout,
    )
    print_step: Callable[[int], None] = lambda step: print(f"step {step}", flush=True)  # noqa: E731
    run_fake_training(
        callback,
        epochs=options.epochs,
        steps_per_epoch=options.steps_per_epoch,
        eval_strategy=options.eval_strategy,
        eval_steps=options.eval_steps,
        eval_datasets=options.eval_datasets,
        logs_at=logs_at,
        step_seconds=options.step_seconds,
        after_step=print_step if options.print_steps else (lambda step: None),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
