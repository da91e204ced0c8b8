"""The real server as the suite sees it: started once per session, spoken to over HTTP.

``start_server`` runs ``start-server.ts`` (the server of ``npm start`` on an embedded database,
manual launcher only) and ``Api`` calls tRPC procedures with the wire format of the README's
"Calling the API": a query is ``GET /trpc/<procedure>?input=<json>``, a mutation a JSON ``POST``,
credentials in ``Authorization: Bearer``. The user session does what a person does on the web
app (upload a dataset, deploy, cancel, read predictions); the job token is only for the pod.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT_ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PASSWORD = "correct horse battery staple"

Key = Tuple[int, int, int]  # (epoch, step, sampleIndex)


class ApiError(Exception):
    def __init__(self, procedure: str, status: int, body: str) -> None:
        super().__init__(f"{procedure}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class Api:
    def __init__(self, url: str, token: Optional[str] = None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    def _send(self, procedure: str, request: urllib.request.Request) -> Any:
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                body = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as error:
            raise ApiError(procedure, error.code, error.read().decode("utf-8", "replace")) from None
        return body["result"]["data"]

    def query(self, procedure: str, payload: Any = None) -> Any:
        query = "" if payload is None else "?input=" + urllib.parse.quote(json.dumps(payload))
        return self._send(procedure, urllib.request.Request(f"{self.url}/trpc/{procedure}{query}", method="GET"))

    def mutate(self, procedure: str, payload: Any = None) -> Any:
        data = json.dumps({} if payload is None else payload).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}/trpc/{procedure}", data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        return self._send(procedure, request)


@dataclass
class Job:
    """A manual job as deploy answers it: the pod's three variables, given once."""

    id: str
    env: Dict[str, str]


@dataclass
class StoredRow:
    trigger: str
    prompt: str
    ground_truth: str
    prediction: str


class User:
    """A registered account with one uploaded dataset: what every test deploys its jobs from."""

    def __init__(self, api: Api, dataset_id: str) -> None:
        self.api = api
        self.dataset_id = dataset_id

    def deploy(self, name: str, *, trigger: str = "eval", step_interval: Optional[int] = None, eval_strategy: str = "epoch") -> Job:
        predictions: Dict[str, Any] = {"sampleFrequency": trigger, "sampleCount": 3, "maxNewTokens": 6}
        if step_interval is not None:
            predictions["stepInterval"] = step_interval
        training: Dict[str, Any] = {"epochs": 2, "batchSize": 4, "evalStrategy": eval_strategy}
        if eval_strategy == "steps":
            training["evalSteps"] = 2
        config = {"datasetId": self.dataset_id, "launcher": "manual", "training": training, "predictions": predictions}
        answer = self.api.mutate("jobs.deploy", {"name": name[:120], "config": config})
        pod = answer["pod"]
        assert pod is not None, f"a manual deploy answers with the pod's variables: {answer}"
        return Job(id=answer["job"]["id"], env=dict(pod["env"]))

    def cancel(self, job_id: str) -> Dict[str, Any]:
        return dict(self.api.mutate("jobs.cancel", {"jobId": job_id}))

    def job(self, job_id: str) -> Dict[str, Any]:
        return dict(self.api.query("jobs.get", {"jobId": job_id}))

    def rotate_token(self, job_id: str) -> Dict[str, str]:
        return dict(self.api.mutate("jobs.rotateToken", {"jobId": job_id})["env"])

    def rows(self, job_id: str) -> Dict[Key, StoredRow]:
        """Every stored prediction of the job, keyed by (epoch, step, sampleIndex), page by page."""
        rows: Dict[Key, StoredRow] = {}
        cursor: Optional[str] = None
        while True:
            payload: Dict[str, Any] = {"jobId": job_id, "limit": 200}
            if cursor:
                payload["cursor"] = cursor
            page = self.api.query("predictions.list", payload)
            for item in page["items"]:
                key = (int(item["epoch"]), int(item["step"]), int(item["sampleIndex"]))
                assert key not in rows, f"the server listed {key} twice"
                rows[key] = StoredRow(item["trigger"], item["prompt"], item["groundTruth"], item["prediction"])
            cursor = page["nextCursor"]
            if not cursor:
                return rows


def register_user(url: str, jsonl: str) -> User:
    email = f"hf-suite-{uuid.uuid4().hex[:12]}@example.com"
    session = Api(url).mutate("auth.register", {"email": email, "password": PASSWORD})
    api = Api(url, session["token"])
    dataset = api.mutate("datasets.upload", {"name": "tiny questions", "jsonl": jsonl})
    return User(api, dataset["id"])


class ServerProcess:
    """``node --import tsx trainer/python/tests/start-server.ts DATA_DIR``, until ``stop()``."""

    def __init__(self, startup_timeout: float = 120.0) -> None:
        self.data_dir = tempfile.mkdtemp(prefix="hf-suite-server-")
        self.output: List[str] = []
        self.process = subprocess.Popen(
            ["node", "--import", "tsx", os.path.join(HERE, "start-server.ts"), self.data_dir],
            cwd=PROJECT_ROOT,
            stdin=subprocess.PIPE,  # closed by stop() or by our death: the server then exits
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Only what node needs: no DATABASE_URL or other configuration leaks in from the caller.
            env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
        )
        self.url = self._wait_for_url(startup_timeout)

    def _wait_for_url(self, timeout: float) -> str:
        found: List[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith("LISTENING ") and not found:
                    found.append(line.split()[1])
                    ready.set()
            ready.set()

        threading.Thread(target=read, name="server-output", daemon=True).start()
        if not ready.wait(timeout) or not found:
            self.stop()
            raise RuntimeError("the server did not start:\n" + "\n".join(self.output[-40:]))
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
