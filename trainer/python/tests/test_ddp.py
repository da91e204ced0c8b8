"""Two processes, data-parallel on CPU (torchrun, gloo), against the real server.

- The job cancelled from the web app mid-run: both ranks stop at the same step, and every
  prediction made before the stop is stored.
- A stand-in for ZeRO-3 / FSDP, where generate() is itself a collective: the run must neither
  hang nor lose rows.

Starting two processes that import torch and transformers is the slow part: two runs in all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

from harness import Case, assert_rows, expected_rows, pc, step_epochs
from server_api import Job, wait_for
from tiny_models import write_jsonl

HERE = os.path.dirname(os.path.abspath(__file__))
GATE_STEP = 3  # rank 0 waits at the end of this step until the cancel has reached the callback
STALL_SECONDS = 25.0  # no rank finished a step for this long once training ran: a hang


class TorchRun:
    """``torchrun --standalone --nproc_per_node 2 ddp_train.py ...`` in its own process group."""

    def __init__(self, case: Case, job: Job, *extra: str) -> None:
        tmp_path = case.tmp_path
        tokenizer_dir = str(tmp_path / "tokenizer")
        case.tokenizer.save_pretrained(tokenizer_dir)
        write_jsonl(case.train_rows, str(tmp_path / "train.jsonl"))
        write_jsonl(case.eval_rows, str(tmp_path / "eval.jsonl"))
        self.result_prefix = str(tmp_path / "result")
        self.log_path = tmp_path / "torchrun.log"
        self._log = open(self.log_path, "wb")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            os.path.join(HERE, "ddp_train.py"), tokenizer_dir, str(tmp_path / "eval.jsonl"), str(tmp_path / "train.jsonl"),
            str(tmp_path), self.result_prefix, str(GATE_STEP), *extra,
        ]
        env = {**os.environ, **job.env, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, cwd=str(tmp_path), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def output(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def progress(self) -> List[List[int]]:
        steps = []
        for rank in (0, 1):
            path = f"{self.result_prefix}.{rank}.progress"
            with open(path, encoding="utf-8") if os.path.exists(path) else open(os.devnull) as source:
                steps.append([int(line) for line in source if line.strip()])
        return steps

    def wait(self, timeout: float = 240.0) -> Optional[int]:
        """The exit code; None when the ranks hung (no step finished for STALL_SECONDS) or time ran out."""
        deadline = time.monotonic() + timeout
        last, last_change = self.progress(), time.monotonic()
        while self.process.poll() is None:
            now = time.monotonic()
            current = self.progress()
            if current != last:
                last, last_change = current, now
            if now > deadline or (any(current) and now - last_change > STALL_SECONDS):
                return None
            time.sleep(0.2)
        return self.process.returncode

    def stop(self) -> None:
        """Ends torchrun and both ranks (they share its process group), then closes the log."""
        if self.process.poll() is None:
            for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # any rank left behind by the launcher
        except ProcessLookupError:
            pass
        self._log.close()

    def results(self) -> List[Dict[str, Any]]:
        return [json.loads(open(f"{self.result_prefix}.{rank}.json", encoding="utf-8").read()) for rank in (0, 1)]


def test_ddp_cancel_stops_every_rank_at_the_same_step(case: Case) -> None:
    user = case.user
    job = case.deploy(trigger="steps", step_interval=1, eval_strategy="no")
    run = TorchRun(case, job)
    try:
        # The web app's Cancel, once the rows of the steps up to the gate are stored (3 samples each).
        wait_for(
            lambda: run.process.poll() is not None or {key[1] for key in user.rows(job.id)} >= set(range(1, GATE_STEP + 1)),
            f"rows of steps 1..{GATE_STEP}", timeout=240, interval=0.2,
        )
        assert run.process.poll() is None, "torchrun ended before the cancel:\n" + run.output()
        assert user.cancel(job.id)["status"] == "cancelled"
        code = run.wait()
    finally:
        run.stop()
    assert code == 0, f"torchrun {'hung' if code is None else f'exited with {code}'} (progress {run.progress()}):\n{run.output()}"

    rank0, rank1 = run.results()
    assert (rank0["world_size"], rank1["world_size"]) == (2, 2)
    # The cancel reached the callback during step 3: every rank stops at the end of step 4.
    assert (rank0["global_step"], rank1["global_step"]) == (GATE_STEP + 1, GATE_STEP + 1), run.output()
    assert rank0["step_ends"] == rank1["step_ends"] == list(range(1, GATE_STEP + 2))

    # Rank 0 predicted at every step up to the stop (whether rank 1 generated too is the
    # callback's choice; only rank 0's rows may reach the server, once each).
    assert [fire["step"] for fire in rank0["fires"]] == list(range(1, GATE_STEP + 2))
    references = {fire["step"]: fire["texts"] for fire in rank0["fires"]}
    expected = expected_rows(rank0["samples"], references, step_epochs(list(range(1, GATE_STEP + 2))), "steps")
    assert_rows(user.rows(job.id), {key: row for key, row in expected.items() if key[1] <= GATE_STEP})
    # The last step's rows were made after the job ended: kept in the spool, stored by `sync` with
    # the upload token the job page offers for an ended job.
    assert pc.sync(rank0["spool"], user.rotate_token(job.id)) == 0
    assert_rows(user.rows(job.id), expected)
    assert user.job(job.id)["status"] == "cancelled"


def test_b1_sharded_model_generates_on_every_rank_without_hanging(case: Case) -> None:
    # Reproduction: 2 ranks, gloo, tiny GPT-2 marked `_is_fsdp_managed_module` (what FSDP2 sets),
    # steps trigger every 2 steps, max_steps=4. transformers turns on synced_gpus for such a model
    # (generation/utils.py), so rank 0's generate() all-reduces at every decoding step while
    # rank 1 is already in its next training collective: today both ranks hang at step 2.
    job = case.deploy(trigger="steps", step_interval=2, eval_strategy="no")
    run = TorchRun(case, job, "--sharded")
    try:
        code = run.wait()
    finally:
        run.stop()
    outcome = "hung" if code is None else f"exited with {code}"
    assert code == 0, f"torchrun {outcome} (steps seen per rank {run.progress()}):\n{run.output(3000)}"
    rank0, rank1 = run.results()
    assert (rank0["global_step"], rank1["global_step"]) == (4, 4)
    references = {fire["step"]: fire["texts"] for fire in rank0["fires"]}
    # Only the main process writes: exactly one set of rows per fire.
    assert_rows(case.user.rows(job.id), expected_rows(rank0["samples"], references, step_epochs([2, 4]), "steps"))
