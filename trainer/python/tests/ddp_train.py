"""One rank of a CPU data-parallel run (gloo), started by test_ddp.py through torchrun.

Every rank builds the same tiny GPT-2, the callback (as a user's script does, on every rank) and
a recorder; rank 0 also holds the gate: at the end of ``--gate-step`` it waits until the
callback has learnt that the job was cancelled (the test cancels it from the user's session once
the rows of the steps so far are stored). Each rank writes what it saw to ``<result>.<rank>.json``.

With ``--sharded`` there is no gate: the model is marked as FSDP-managed the way FSDP2 marks it
(``_is_fsdp_managed_module``), a stand-in for ZeRO-3 / FSDP, which cannot run on CPU here (accelerate
enables FSDP for GPU back ends only). transformers then generates with ``synced_gpus=True`` on its
own (generation/utils.py, ``is_fsdp_managed_module``), so every decoding step is a collective:
exactly the condition under which generating on rank 0 alone desynchronises the ranks.

Arguments: TOKENIZER_DIR EVAL_ROWS_JSONL TRAIN_ROWS_JSONL OUT_DIR RESULT_PREFIX GATE_STEP [--sharded]
Environment: JOB_ID, JOB_TOKEN, API_URL as a pod gets them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402
from harness import attach, cancel_seen, make_callback, sample_prompts, training_args  # noqa: E402
from server_api import Job  # noqa: E402
from tiny_models import CausalLMDataset, gpt2, read_jsonl  # noqa: E402
from transformers import PreTrainedTokenizerFast, Trainer, TrainerCallback  # noqa: E402


class GateUntilCancelSeen(TrainerCallback):
    """Rank 0 only: holds training at the end of one step until the cancel has reached the callback."""

    def __init__(self, callback: Any, step: int, timeout: float = 120.0) -> None:
        self.callback, self.step, self.timeout = callback, step, timeout

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step != self.step or not state.is_world_process_zero:
            return
        deadline = time.monotonic() + self.timeout
        while not cancel_seen(self.callback):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the job was not cancelled within {self.timeout:g}s of step {self.step}")
            time.sleep(0.05)


class Progress(TrainerCallback):
    """Appends each finished step to ``<result>.<rank>.progress``: the test tells a hang from a slow start."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{state.global_step}\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("tokenizer_dir", "eval_rows", "train_rows", "out_dir", "result_prefix"):
        parser.add_argument(name)
    parser.add_argument("gate_step", type=int)
    parser.add_argument("--sharded", action="store_true")
    options = parser.parse_args()

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    tokenizer = PreTrainedTokenizerFast.from_pretrained(options.tokenizer_dir)
    eval_rows = read_jsonl(options.eval_rows)
    train_rows = read_jsonl(options.train_rows)
    job = Job(id=os.environ.get("JOB_ID", ""), env={name: os.environ.get(name, "") for name in ("JOB_ID", "JOB_TOKEN", "API_URL")})
    interval = 2 if options.sharded else 1
    callback = make_callback(
        job, options.out_dir, eval_rows, tokenizer, sample_frequency="steps", step_interval=interval, environ=None
    )
    # Two processes on one machine with a global batch of 4: 6 optimizer steps per epoch.
    args = training_args(
        os.path.join(options.out_dir, "trainer"), per_device_train_batch_size=2, eval_strategy="no",
        ddp_backend="gloo", ddp_timeout=60 if options.sharded else 300, **({"max_steps": 4} if options.sharded else {}),
    )
    model = gpt2(tokenizer)
    if options.sharded:
        model._is_fsdp_managed_module = True  # type: ignore[assignment]  # what FSDP2 sets on the modules it manages
    trainer = Trainer(model=model, args=args, train_dataset=CausalLMDataset(train_rows, tokenizer), processing_class=tokenizer)
    run = attach(trainer, job, callback, tokenizer, prompts=lambda: sample_prompts(callback))
    trainer.add_callback(Progress(f"{options.result_prefix}.{rank}.progress"))
    if not options.sharded:
        trainer.add_callback(GateUntilCancelSeen(callback, options.gate_step))
    trainer.train()
    if rank == 0:
        callback.close()
    result: Dict[str, Any] = {
        "rank": rank,
        "world_size": int(os.environ["WORLD_SIZE"]),
        "global_step": trainer.state.global_step,
        "step_ends": run.recorder.step_ends,
        "fires": [{"step": fire.step, "texts": fire.texts} for fire in run.recorder.fires],
        "samples": [dict(sample) for sample in callback.samples],
        "spool": callback.spool.path,
    }
    with open(f"{options.result_prefix}.{rank}.json", "w", encoding="utf-8") as out:
        json.dump(result, out)
    # Leaving with the gloo group alive can abort the process at exit ("terminate called without
    # an active exception"), a torch matter that has nothing to do with the callback.
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
