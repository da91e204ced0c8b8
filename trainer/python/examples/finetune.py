#!/usr/bin/env python3
"""Fine-tune a causal language model on a predictions job with Hugging Face ``Trainer``.

The pod command for jobs you deploy from the web app: the local launcher runs it as
``LOCAL_TRAINER_COMMAND='["python3","trainer/python/examples/finetune.py"]'``, a Kubernetes or
RunPod pod as ``KUBERNETES_COMMAND`` / ``RUNPOD_COMMAND`` in an image with torch, transformers,
this script and ``predictions_callback.py``. It reads ``JOB_ID``, ``JOB_TOKEN`` and ``API_URL``,
fetches the job (``GET /trpc/pod.config``): its dataset and its settings, which become
``TrainingArguments`` (epochs, batch size, learning rate, evaluation strategy, seed) and the
``PredictionsCallback``'s (trigger, step interval, sample count, generation length), trains, and
the callback sends the predictions, the Trainer's logs, heartbeats and the end of the job.

    python3 finetune.py                       # a tiny GPT-2-style model built here: no download
    python3 finetune.py --model ./my-model     # any causal LM you have (a local path or hub id)
    python3 finetune.py --output-dir ./out     # keep the fine-tuned model and tokenizer

Rows are ``prompt``/``completion`` or conversational (``messages`` with roles, TRL's format): a
conversation's last message is the completion and the messages before it, rendered with the
tokenizer's chat template, the prompt. The loss is on the completion only. A tenth of the rows
(the server's ``plan.evalRows``, chosen with the job's seed) is held out for evaluation and for
the predictions. Without ``--model`` the tokenizer is a byte-level BPE trained here on the job's
rows and the model a 2-layer GPT-2 built from a config, trained with plain SGD like the bundled
trainer (so the web app's learning rates mean the same): small enough for a CPU in seconds, real
enough that its eval loss falls and its answers take the kind the question asks for (on the
example dataset, after ten epochs: a capital for a capital, a day for a day). A model of yours
(``--model``) is trained with Trainer's AdamW: set the job's learning rate for it (about 5e-5).

Exit codes, as the bundled trainer's: 0 every prediction stored; 2 trained, but some predictions
are spooled or were rejected (the summary says which); 3 stopped because the job ended on the
server (cancelled); 1 training failed; 64 usage or configuration. The last line is the
``SUMMARY status=…`` the local launcher reads.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import traceback
from typing import Any, Dict, List, Mapping, Optional, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
# In the repository the callback is one directory up, and that copy wins over an installed one;
# in an image it sits beside this script or is installed (`pip install ./trainer/python`).
if os.path.isfile(os.path.join(os.path.dirname(HERE), "predictions_callback.py")):
    sys.path.insert(0, os.path.dirname(HERE))

import predictions_callback as pc  # noqa: E402

Row = Mapping[str, Any]
Example = Dict[str, str]  # {"prompt": what the model is given, "completion": what it should answer}

EXIT_OK, EXIT_FAILED, EXIT_SPOOLED, EXIT_CANCELLED, EXIT_USAGE = 0, 1, 2, 3, 64

# The tiny model's special tokens, and a chat template so conversational rows can be rendered.
PAD, EOS = "<|pad|>", "<|endoftext|>"
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
# Long rows are cut so one row never dominates a step: the prompt keeps its end, the completion its start.
MAX_PROMPT_TOKENS = 192
MAX_COMPLETION_TOKENS = 64


def log(message: str) -> None:
    print(f"[finetune] {message}", flush=True)


# --- The job ----------------------------------------------------------------------------------------


def fetch_job(client: pc.PodClient) -> Dict[str, Any]:
    """``pod.config``: ``{jobId, name, config: {training, predictions}, dataset: {rows}, plan}``."""
    job = client.query("pod.config")
    if not isinstance(job, dict) or not isinstance(job.get("config"), dict) or not isinstance(job.get("dataset"), dict):
        raise ValueError("pod.config answered without config and dataset")
    return job


def to_examples(rows: Sequence[Row], tokenizer: Any) -> List[Example]:
    """Prompt/completion rows as they are; a conversation split before its last (assistant) message."""
    examples = []
    for number, row in enumerate(rows, start=1):
        messages = row.get("messages")
        if messages is not None:
            if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(m, dict) for m in messages):
                raise ValueError(f"row {number}: messages must be a list of at least two {{role, content}} objects")
            *context, answer = messages
            if answer.get("role") != "assistant":
                raise ValueError(f"row {number}: the last message must be the assistant's answer, not {answer.get('role')!r}")
            if not getattr(tokenizer, "chat_template", None):
                raise ValueError("conversational rows need a tokenizer with a chat template (tokenizer.chat_template)")
            prompt = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
            examples.append({"prompt": str(prompt), "completion": str(answer.get("content", ""))})
            continue
        completion = next((row[key] for key in pc.COMPLETION_KEYS if row.get(key) is not None), None)
        if row.get("prompt") is None or completion is None:
            raise ValueError(f"row {number}: expected prompt and completion (or messages), got keys {sorted(row)}")
        examples.append({"prompt": str(row["prompt"]), "completion": str(completion)})
    return examples


def split(examples: Sequence[Example], eval_count: int, seed: int) -> "tuple[List[Example], List[Example]]":
    """Hold out ``eval_count`` rows chosen with the seed (kept in dataset order); all of them when that is every row."""
    if eval_count >= len(examples):
        return list(examples), list(examples)
    held = set(random.Random(seed).sample(range(len(examples)), k=max(1, eval_count)))
    train = [example for index, example in enumerate(examples) if index not in held]
    evaluation = [example for index, example in enumerate(examples) if index in held]
    return train, evaluation


def texts_of(rows: Sequence[Row]) -> List[str]:
    """The rows' text as the model reads it (a completion after its prompt, a message after its role):
    what a tokenizer trained here learns its merges from."""
    texts: List[str] = []
    for row in rows:
        for message in row.get("messages") or []:
            texts.append(f"<|{message.get('role', '')}|> {message.get('content', '')}")
        completion = next((row[key] for key in pc.COMPLETION_KEYS if row.get(key) is not None), None)
        if row.get("prompt") is not None:
            texts.append(f"{row['prompt']} {'' if completion is None else completion}")
    return texts


# --- Model and tokenizer -----------------------------------------------------------------------------


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2000) -> Any:
    """A byte-level BPE (GPT-2's scheme: any text encodes, decoding gives it back) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, bos_token=EOS, model_input_names=["input_ids", "attention_mask"]
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer: Any, n_positions: int, seed: int) -> Any:
    """A 2-layer, 128-wide GPT-2 with random weights, its special ids set to the tokenizer's."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    ids = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id}
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=128, n_layer=2, n_head=4, **ids))
    # A config built from scratch carries GPT-2's own ids (50256); generation must use these.
    for name, value in ids.items():
        setattr(model.generation_config, name, value)
    # Briefly trained, a model this small answers EOS first (the one token every row ends with),
    # and a page of empty predictions says nothing: it is made to say at least its first word.
    model.generation_config.min_new_tokens = 1
    return model


def load_model(path: str) -> "tuple[Any, Any]":
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path)
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


# --- Data ------------------------------------------------------------------------------------------


def encode(example: Example, tokenizer: Any) -> Dict[str, List[int]]:
    """``prompt`` as the callback will tokenize it, then the completion and EOS; loss on the completion only.

    The prompt is tokenized alone (as generation sees it) and the completion after it, so the
    tokens the model learns to continue with are exactly the ones it is given at prediction time.
    """
    prompt_ids = list(tokenizer(example["prompt"])["input_ids"])[-MAX_PROMPT_TOKENS:]
    gap = "" if example["prompt"][-1:].isspace() else " "
    completion_ids = list(tokenizer(gap + example["completion"], add_special_tokens=False)["input_ids"])[:MAX_COMPLETION_TOKENS]
    if len(completion_ids) < MAX_COMPLETION_TOKENS and tokenizer.eos_token_id is not None:
        completion_ids.append(tokenizer.eos_token_id)  # a cut completion must not learn to stop where the text did not
    return {"input_ids": prompt_ids + completion_ids, "labels": [-100] * len(prompt_ids) + completion_ids}


class Collator:
    """Pads a batch on the right; padding is masked out of attention and loss."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: Sequence[Mapping[str, List[int]]]) -> Dict[str, Any]:
        import torch

        width = max(len(feature["input_ids"]) for feature in features)
        batch: Dict[str, List[List[int]]] = {"input_ids": [], "attention_mask": [], "labels": []}
        for feature in features:
            pad = width - len(feature["input_ids"])
            batch["input_ids"].append(list(feature["input_ids"]) + [self.pad_id] * pad)
            batch["attention_mask"].append([1] * len(feature["input_ids"]) + [0] * pad)
            batch["labels"].append(list(feature["labels"]) + [-100] * pad)
        return {name: torch.tensor(values, dtype=torch.long) for name, values in batch.items()}


# --- The job's settings, mapped ----------------------------------------------------------------------


def training_arguments(training: Mapping[str, Any], output_dir: str, *, learning_rate: float, optim: Optional[str] = None) -> Any:
    """The job's ``training`` settings as ``TrainingArguments`` (``optim``: Trainer's default, AdamW, unless named)."""
    from transformers import TrainingArguments

    strategy = str(training.get("evalStrategy", "epoch"))
    settings: Dict[str, Any] = dict(
        output_dir=output_dir,
        num_train_epochs=int(training["epochs"]),
        per_device_train_batch_size=int(training["batchSize"]),
        per_device_eval_batch_size=int(training["batchSize"]),
        learning_rate=learning_rate,
        eval_strategy=strategy,
        seed=int(training.get("seed", 42)),
        logging_strategy="steps",
        logging_steps=10,
        save_strategy="no",  # the model is saved once, at the end, when --output-dir asks for it
        report_to="none",  # the callback reports; no other tracker is assumed installed
        disable_tqdm=True,  # the pod's output is a log file: one line per log, not progress bars
        dataloader_num_workers=0,
    )
    if strategy == "steps":
        settings["eval_steps"] = int(training["evalSteps"])
    if optim is not None:
        settings["optim"] = optim
    return TrainingArguments(**settings)


def callback_settings(predictions: Mapping[str, Any], seed: int, total_steps: int) -> Dict[str, Any]:
    """The job's ``predictions`` settings as ``PredictionsCallback`` arguments."""
    if predictions.get("enabled") is False:
        # No predictions, but still heartbeats, metrics, logs and the end of the job: a step
        # trigger past the last step never fires.
        return {"sample_frequency": "steps", "step_interval": total_steps + 1, "seed": seed}
    settings: Dict[str, Any] = {
        "sample_frequency": str(predictions.get("sampleFrequency", "eval")),
        "sample_count": int(predictions.get("sampleCount", 5)),
        "max_new_tokens": int(predictions.get("maxNewTokens", 24)),
        "seed": seed,
    }
    if settings["sample_frequency"] == "steps":
        settings["step_interval"] = int(predictions["stepInterval"])
    return settings


# --- The run -----------------------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="finetune.py",
        description="Fine-tune a causal LM on a predictions job (JOB_ID, JOB_TOKEN, API_URL) with Hugging Face Trainer.",
    )
    parser.add_argument("--model", help="a causal LM to fine-tune: a local path (or a hub id where the pod can download); default: a tiny GPT-2 built here")
    parser.add_argument("--output-dir", help="save the fine-tuned model and tokenizer here (default: not saved)")
    parser.add_argument(
        "--learning-rate",
        type=float,
        help="instead of the job's learningRate (the tiny model trains with SGD, where the default 0.5 works; --model with AdamW: about 5e-5)",
    )
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    env = pc.PodEnv(os.environ)  # trimmed; a value is named, never shown
    for problem in env.problems:
        log(f"configuration: {problem}")
    if not env.can_connect:
        missing = [name for name in ("JOB_TOKEN", "API_URL") if not env.presence[name]]
        log(f"needs the job's {' and '.join(missing)} (the launcher sets JOB_ID, JOB_TOKEN and API_URL): the dataset and settings come from the server")
        return EXIT_USAGE
    assert env.api_url is not None and env.token is not None
    client = pc.PodClient(env.api_url, env.token)
    try:
        job = fetch_job(client)
    except (pc.PodRejected, pc.PodUnreachable, ValueError) as error:
        log(f"could not read the job (pod.config): {error}")
        return EXIT_USAGE
    # Trainer needs an output directory even when nothing is saved: a scratch one, removed at the end.
    with tempfile.TemporaryDirectory(prefix="finetune-") as scratch:
        return run(job, args, env, client, output_dir=args.output_dir or scratch)


def run(job: Mapping[str, Any], args: argparse.Namespace, env: pc.PodEnv, client: pc.PodClient, *, output_dir: str) -> int:
    started = time.monotonic()
    callback: Optional[pc.PredictionsCallback] = None
    trainer: Any = None
    try:
        callback, trainer = build(job, args, env, output_dir)
        trainer.train()
        if args.output_dir:
            trainer.save_model(args.output_dir)
            trainer.processing_class.save_pretrained(args.output_dir)
            log(f"saved the model and tokenizer to {args.output_dir}")
    except Exception as error:
        log(f"training failed: {type(error).__name__}: {error}\n{traceback.format_exc()}")
        if callback is not None:
            callback.close(completed=False)  # every row made so far is sent (or kept in the spool) first
        summary("failed", callback, trainer, started)
        try:
            # Failing the job revokes its token, so it comes after the rows.
            client.mutate("pod.finish", {"status": "failed", "error": f"{type(error).__name__}: {error}"[-8000:]}, attempts=2)
        except (pc.PodRejected, pc.PodUnreachable) as report_error:
            log(f"could not report the failure: {report_error}")
        return EXIT_FAILED
    callback.close(completed=True)  # flushes; pod.finish was sent at the end of train() when every row was stored
    state = trainer.state
    if state.max_steps and state.global_step < state.max_steps:
        # Nothing else here stops training early: the callback did, because the job ended on the server.
        summary("failed", callback, trainer, started, note="stopped: the job ended on the server")
        return EXIT_CANCELLED
    counters = callback.counters.snapshot()
    summary("completed", callback, trainer, started)
    return EXIT_SPOOLED if counters["spooled"] or counters["rejected"] else EXIT_OK


def build(job: Mapping[str, Any], args: argparse.Namespace, env: pc.PodEnv, output_dir: str) -> "tuple[pc.PredictionsCallback, Any]":
    from transformers import Trainer

    config, rows, plan = job["config"], job["dataset"]["rows"], job.get("plan") or {}
    training, predictions = config["training"], config["predictions"]
    seed = int(training.get("seed", 42))
    if args.model:
        model, tokenizer = load_model(args.model)
    else:
        tokenizer = train_tokenizer(texts_of(rows))
    examples = to_examples(rows, tokenizer)
    eval_count = int(plan.get("evalRows") or max(1, len(examples) // 10))
    train_examples, eval_examples = split(examples, eval_count, seed)
    train_set = [encode(example, tokenizer) for example in train_examples]
    eval_set = [encode(example, tokenizer) for example in eval_examples]
    max_new_tokens = int(predictions.get("maxNewTokens", 24))
    if not args.model:
        longest_prompt = max(len(tokenizer(example["prompt"])["input_ids"]) for example in eval_examples)
        longest = max(len(item["input_ids"]) for item in train_set + eval_set)
        model = tiny_model(tokenizer, n_positions=max(longest, longest_prompt + max_new_tokens) + 8, seed=seed)
    # The job's learning rate is the web app's, whose default (0.5) is meant for plain gradient
    # descent, as the bundled trainer does it. The tiny model is trained that way too (SGD: 0.5
    # measured as good for it as AdamW at 3e-3); a model of yours gets Trainer's AdamW, for which a
    # rate past 0.01 wrecks the weights, so that is said out loud. --learning-rate overrides the job.
    learning_rate = args.learning_rate if args.learning_rate is not None else float(training["learningRate"])
    optim = None if args.model else "sgd"
    if args.model and learning_rate > 0.01:
        log(f"learning rate {learning_rate:g} is far too high for AdamW (about 5e-5 is usual): set the job's learningRate or pass --learning-rate")

    arguments = training_arguments(training, output_dir, learning_rate=learning_rate, optim=optim)
    steps_per_epoch = -(-len(train_set) // int(training["batchSize"]))
    total_steps = steps_per_epoch * int(training["epochs"])
    spool_dir = os.environ.get("TRAINER_SPOOL_DIR", "").strip()
    callback = pc.PredictionsCallback(
        eval_examples,
        tokenizer=tokenizer,
        # Where the local launcher looks for what a dead trainer left (it uploads it); elsewhere
        # the callback's default, one file per job in the working directory.
        spool_path=os.path.join(spool_dir, f"{env.job_id}.jsonl") if spool_dir and env.job_id else None,
        **callback_settings(predictions, seed, total_steps),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=train_set,
        eval_dataset=eval_set if arguments.eval_strategy != "no" else None,
        data_collator=Collator(int(tokenizer.pad_token_id)),
        processing_class=tokenizer,
        callbacks=[callback],
    )
    log(
        f"job {job.get('name')!r}: {len(train_set)} training and {len(eval_set)} held-out rows, "
        f"{training['epochs']} epoch(s) of {steps_per_epoch} step(s), evaluation {training.get('evalStrategy')}, "
        f"predictions {callback.sample_frequency}; model {args.model or 'tiny GPT-2 (built here)'}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return callback, trainer


def summary(status: str, callback: Optional[pc.PredictionsCallback], trainer: Any, started: float, note: str = "") -> None:
    """The line the local launcher reads (``SUMMARY status=completed|failed``), with the counters."""
    c = callback.counters.snapshot() if callback is not None else {"generated": 0, "persisted": 0, "spooled": 0, "rejected": 0}
    state = getattr(trainer, "state", None)
    step = f"{getattr(state, 'global_step', 0)}/{getattr(state, 'max_steps', 0) or '?'}"
    print(
        f"SUMMARY status={status} generated={c['generated']} persisted={c['persisted']} spooled={c['spooled']} "
        f"rejected={c['rejected']} step={step} seconds={time.monotonic() - started:.1f}{f' ({note})' if note else ''}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
