"""examples/finetune.py as the web app runs it, and its handling of rows.

The end-to-end test starts the real server with the local launcher running the example script
(``LOCAL_TRAINER_COMMAND`` = this interpreter and the script), deploys a job on the example dataset
every account starts with through the API, as the web app's **Deploy job** does, waits for it to
complete and reads back what the job page shows: predictions for each evaluation, the Trainer's
metrics, healthy diagnostics. Nothing is faked: a real Trainer fine-tunes a tiny GPT-2 that the
script builds, with a tokenizer it trains on the job's rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import Any, Dict, Iterator, List

import pytest
from server_api import PASSWORD, PROJECT_ROOT, Api, ServerProcess, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(HERE), "examples", "finetune.py")
sys.path.insert(0, os.path.dirname(EXAMPLE))

import finetune  # noqa: E402

# start-server.ts, with the launchers as arguments: the server of `npm start` on an embedded database.
START_SERVER = """
import { loadConfig } from '%(root)s/server/env.ts';
import { startServer } from '%(root)s/server/server.ts';
const [dataDir, launchers, trainerCommand] = process.argv.slice(1);
const server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LAUNCHERS: launchers, LOCAL_TRAINER_COMMAND: trainerCommand }));
console.log(`LISTENING ${server.url}`);
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  server.close().then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();
"""


class LocalLauncherServer(ServerProcess):
    """The suite's server process (same output reading and stopping), offering the local launcher."""

    def __init__(self, trainer_command: List[str], startup_timeout: float = 120.0) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="finetune-example-server-")
        self.output: List[str] = []
        script = START_SERVER % {"root": PROJECT_ROOT}
        self.process = subprocess.Popen(
            ["node", "--import", "tsx", "--input-type=module", "-e", script, self.data_dir, "local", json.dumps(trainer_command)],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
        )
        self.url = self._wait_for_url(startup_timeout)

    def trainer_log(self, job_id: str) -> str:
        """What the local launcher's trainer process printed (DATA_DIR/local-jobs/<jobId>.log)."""
        try:
            with open(os.path.join(self.data_dir, "local-jobs", f"{job_id}.log"), encoding="utf-8", errors="replace") as log:
                return log.read()
        except FileNotFoundError:
            return "(no trainer log)"


@pytest.fixture(scope="module")
def local_server() -> Iterator[LocalLauncherServer]:
    server = LocalLauncherServer([sys.executable, EXAMPLE])
    try:
        yield server
    finally:
        server.stop()


def test_a_job_deployed_from_the_api_runs_the_example_and_shows_predictions_for_each_evaluation(local_server: LocalLauncherServer) -> None:
    session = Api(local_server.url).mutate("auth.register", {"email": f"finetune-{uuid.uuid4().hex[:12]}@example.com", "password": PASSWORD})
    api = Api(local_server.url, session["token"])
    # The example dataset every account starts with (371 rows: 334 trained on, 37 held out).
    [dataset] = api.query("datasets.list")
    config = {
        "datasetId": dataset["id"],
        "launcher": "local",
        "training": {"epochs": 2, "evalStrategy": "epoch"},
        "predictions": {"sampleFrequency": "eval"},
    }
    deployed = api.mutate("jobs.deploy", {"name": "finetune.py example", "config": config})
    job_id = deployed["job"]["id"]

    def ended() -> Any:
        job = api.query("jobs.get", {"jobId": job_id})
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    job = wait_for(ended, "the job to end", timeout=240, interval=0.5)
    assert job["status"] == "completed", f"job {job['status']}: {job.get('error')}\n--- trainer log ---\n{local_server.trainer_log(job_id)[-6000:]}"
    # The job completes at pod.finish, at the end of train(); the script's last line comes after.
    log = wait_for(lambda: (lambda text: text if "SUMMARY status=" in text else None)(local_server.trainer_log(job_id)), "the script's summary", timeout=60)
    assert "SUMMARY status=completed generated=10 persisted=10 spooled=0 rejected=0 step=84/84" in log, log[-3000:]

    # Defaults for the rest: batchSize 8 gives 42 steps per epoch; sampleCount 5 rows per evaluation.
    steps_per_epoch, sample_count = 42, 5
    epochs = api.query("predictions.epochs", {"jobId": job_id})
    assert [(e["epoch"], e["count"], e["minStep"], e["maxStep"]) for e in epochs] == [
        (1, sample_count, steps_per_epoch, steps_per_epoch),
        (2, sample_count, 2 * steps_per_epoch, 2 * steps_per_epoch),
    ], log[-3000:]

    page = api.query("predictions.list", {"jobId": job_id, "limit": 200})
    rows = {(item["epoch"], item["step"], item["sampleIndex"]): item for item in page["items"]}
    assert sorted(rows) == [(epoch, epoch * steps_per_epoch, index) for epoch in (1, 2) for index in range(sample_count)]
    assert {item["trigger"] for item in rows.values()} == {"eval"}

    # The same held-out samples at each evaluation, so epochs line up; each a row of the dataset.
    def samples(epoch: int) -> List[Any]:
        return [(rows[(epoch, epoch * steps_per_epoch, i)]["prompt"], rows[(epoch, epoch * steps_per_epoch, i)]["groundTruth"]) for i in range(sample_count)]

    assert samples(1) == samples(2)
    with open(os.path.join(PROJECT_ROOT, "server", "datasets", "example.jsonl"), encoding="utf-8") as source:
        dataset_pairs = {(row["prompt"], row["completion"]) for row in map(json.loads, source)}
    assert set(samples(1)) <= dataset_pairs
    assert any(item["prediction"].strip() for item in rows.values()), "the model generated nothing at any evaluation"

    # The Trainer's own numbers went through the callback's on_log: an eval loss per evaluation.
    points = api.query("jobs.metrics", {"jobId": job_id})["points"]
    eval_losses = {point["step"]: point["value"] for point in points if point["name"] == "eval_loss"}
    assert sorted(eval_losses) == [steps_per_epoch, 2 * steps_per_epoch], points
    assert any(point["name"] == "loss" for point in points)

    diagnostics = api.query("diagnostics.job", {"jobId": job_id})
    assert diagnostics["status"] == "healthy", json.dumps(diagnostics, indent=2)
    assert diagnostics["rootCause"] is None


# --- Rows: what the script trains on and predicts ------------------------------------------------------

CONVERSATION: Dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "answer in one word"},
        {"role": "user", "content": "what color is the sky ?"},
        {"role": "assistant", "content": "blue"},
    ]
}


def test_prompt_completion_and_conversational_rows_become_the_same_examples() -> None:
    rows = [{"prompt": "what does the dog say ?", "completion": "woof"}, {"prompt": "the opposite of hot is", "response": "cold"}, CONVERSATION]
    tokenizer = finetune.train_tokenizer(finetune.texts_of(rows))
    examples = finetune.to_examples(rows, tokenizer)
    assert examples[:2] == [
        {"prompt": "what does the dog say ?", "completion": "woof"},
        {"prompt": "the opposite of hot is", "completion": "cold"},
    ]
    # A conversation: everything before the answer, rendered with the chat template and ending
    # where the assistant speaks; the answer is the completion.
    assert examples[2] == {
        "prompt": "<|system|> answer in one word\n<|user|> what color is the sky ?\n<|assistant|>",
        "completion": "blue",
    }


def test_the_loss_is_on_the_completion_after_the_prompt_as_the_callback_tokenizes_it() -> None:
    rows = [{"prompt": "what color is the snow ?", "completion": "white"}, CONVERSATION]
    tokenizer = finetune.train_tokenizer(finetune.texts_of(rows))
    for example in finetune.to_examples(rows, tokenizer):
        item = finetune.encode(example, tokenizer)
        # What the callback gives generate(): the prompt alone, tokenized as it is here.
        prompt_ids = tokenizer(example["prompt"])["input_ids"]
        assert item["input_ids"][: len(prompt_ids)] == prompt_ids
        assert item["labels"][: len(prompt_ids)] == [-100] * len(prompt_ids)
        answer = item["input_ids"][len(prompt_ids) :]
        assert item["labels"][len(prompt_ids) :] == answer
        assert answer[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(answer, skip_special_tokens=True).strip() == example["completion"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]}, "last message must be the assistant's"),
        ({"messages": [{"role": "assistant", "content": "alone"}]}, "at least two"),
        ({"question": "no prompt"}, "expected prompt and completion"),
    ],
)
def test_rows_it_cannot_train_on_are_named(row: Dict[str, Any], message: str) -> None:
    tokenizer = finetune.train_tokenizer(["hi again alone"])
    with pytest.raises(ValueError, match=message):
        finetune.to_examples([row], tokenizer)


def test_the_jobs_settings_map_to_trainer_and_callback() -> None:
    training = {"epochs": 4, "batchSize": 16, "learningRate": 0.25, "evalStrategy": "steps", "evalSteps": 7, "seed": 3}
    output_dir = tempfile.mkdtemp(prefix="finetune-args-")
    try:
        arguments = finetune.training_arguments(training, output_dir, learning_rate=0.25, optim="sgd")
    finally:
        shutil.rmtree(output_dir, ignore_errors=True)
    assert arguments.num_train_epochs == 4
    assert (arguments.per_device_train_batch_size, arguments.per_device_eval_batch_size) == (16, 16)
    assert (arguments.learning_rate, arguments.seed) == (0.25, 3)
    assert (getattr(arguments.eval_strategy, "value", arguments.eval_strategy), arguments.eval_steps) == ("steps", 7)
    assert getattr(arguments.optim, "value", arguments.optim) == "sgd"
    settings = finetune.callback_settings({"sampleFrequency": "steps", "stepInterval": 5, "sampleCount": 3, "maxNewTokens": 9}, seed=3, total_steps=40)
    assert settings == {"sample_frequency": "steps", "step_interval": 5, "sample_count": 3, "max_new_tokens": 9, "seed": 3}
    # Predictions off: the callback still reports (heartbeats, metrics, the end), its trigger never fires.
    assert finetune.callback_settings({"enabled": False}, seed=3, total_steps=40) == {"sample_frequency": "steps", "step_interval": 41, "seed": 3}
