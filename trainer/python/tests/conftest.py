"""Session fixtures: one real server, one user with the suite's dataset, one tokenizer; a job per test.

Run with ``trainer/python/ci-hf.sh VERSION`` (it builds the environment). Each test deploys its
own manual job, so tests share nothing on the server and can run in any order.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator, List, Optional

import pytest
from transformers import PreTrainedTokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import Case  # noqa: E402
from server_api import ServerProcess, User, register_user  # noqa: E402
from tiny_models import Row, build_tokenizer, dataset_rows, split_rows  # noqa: E402

# Set by ci-hf.sh when peft and trl could not be installed for this transformers version.
WITHOUT = set(os.environ.get("PREDICTIONS_HF_WITHOUT", "").split())


def needs(package: str) -> pytest.MarkDecorator:
    """Skip only when ci-hf.sh said the package cannot be installed here; a missing import otherwise fails."""
    return pytest.mark.skipif(package in WITHOUT, reason=f"{package} does not install with this transformers version (ci-hf.sh)")


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    process = ServerProcess()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def user(server: ServerProcess) -> User:
    jsonl = "\n".join(json.dumps(row) for row in dataset_rows())
    return register_user(server.url, jsonl)


@pytest.fixture(scope="session")
def rows() -> List[Row]:
    return dataset_rows()


@pytest.fixture(scope="session")
def train_rows(rows: List[Row]) -> List[Row]:
    return split_rows(rows)[0]


@pytest.fixture(scope="session")
def eval_rows(rows: List[Row]) -> List[Row]:
    return split_rows(rows)[1]


@pytest.fixture(scope="session")
def tokenizer(rows: List[Row]) -> PreTrainedTokenizerFast:
    # Named inputs, so transformers 4.57 (whose default adds token_type_ids) and 5.x agree; the
    # token_type_ids case has its own test.
    return build_tokenizer(rows, model_input_names=["input_ids", "attention_mask"])


@pytest.fixture
def case(
    request: pytest.FixtureRequest, tmp_path: Path, user: User, tokenizer: PreTrainedTokenizerFast, rows: List[Row],
    train_rows: List[Row], eval_rows: List[Row],
) -> Iterator[Case]:
    made = Case(request.node.name, tmp_path, user, tokenizer, rows, train_rows, eval_rows)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(autouse=True)
def _quiet_torch() -> None:
    import torch

    torch.set_num_threads(1)  # tiny models: threads cost more than they give on two busy cores


def pytest_report_header(config: pytest.Config) -> Optional[str]:
    import transformers

    return f"transformers {transformers.__version__}; without: {', '.join(sorted(WITHOUT)) or 'nothing'}"
