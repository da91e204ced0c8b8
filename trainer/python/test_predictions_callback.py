"""Tests for predictions_callback.py against a fake pod.* server on a local port (stdlib only).

Run: python3 -m unittest -v trainer/python/test_predictions_callback.py
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import types
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import predictions_callback as pc  # noqa: E402
from fake_training import fake_generate, make_samples, run_fake_training  # noqa: E402

# Shaped like the server's job tokens (a JWT); the callback refuses anything else as misconfigured.
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqb2ItMSIsInNlY3JldCI6InZhbHVlIn0.U0VDUkVULXNpZ25hdHVyZS12YWx1ZS0wMTIzNDU2Nzg5"


class FakePodServer:
    """A pod.* server double: stores rows idempotently on (step, sampleIndex), like the real one.

    ``script[procedure]`` is a list of answers given (with an error envelope) before normal
    service resumes: an HTTP status, or a dict ``{"status", "retry_after", "reason"}``; ``down``
    drops every connection without an answer; ``hang`` accepts and never answers (until closed);
    ``max_rows`` answers 413 to a batch with more rows, as a body limit does; ``tokens`` are the
    accepted tokens and ``revoked`` ones are refused with reason ``token_revoked``; ``reject_sample``
    makes writePredictions refuse rows with that sampleIndex (per-row ``rejected``). Like the
    real server it parses strict JSON (a bare ``NaN`` token is a 400), answers a key stored with
    other content as ``replaced``, stores NUL and lone surrogates as U+FFFD counted ``altered``,
    and refuses metric rows one by one (a name with a control character).
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.stored: Dict[tuple, Dict[str, Any]] = {}
        self.metrics: Dict[tuple, Any] = {}
        self.script: Dict[str, List[Any]] = {}
        self.down = False
        self.hang = False
        self.closed = threading.Event()
        self.max_rows: Optional[int] = None
        self.tokens = {TOKEN}
        self.revoked: set = set()
        self.reject_sample: Optional[int] = None
        self.cancelled = False
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output readable
                pass

            def do_GET(self) -> None:
                fake._handle(self, None)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake._handle(self, raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closed.set()  # releases hanging handlers
        self.httpd.shutdown()
        self.httpd.server_close()

    def calls(self, procedure: str) -> List[Dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["procedure"] == procedure]

    def stored_keys(self) -> set:
        with self.lock:
            return {(r["epoch"], r["step"], r["sampleIndex"], r["trigger"]) for r in self.stored.values()}

    def _handle(self, handler: BaseHTTPRequestHandler, raw: Optional[bytes]) -> None:
        if self.down:
            handler.close_connection = True
            return  # no answer at all: the client sees the connection drop
        if self.hang:
            with self.lock:
                self.requests.append({"procedure": "(hung)", "headers": dict(handler.headers), "raw": raw, "payload": None})
            self.closed.wait()  # the connection is accepted and read; the answer never comes
            handler.close_connection = True
            return
        procedure = handler.path.split("?")[0][len("/trpc/"):]
        body = raw
        if raw is not None and handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(raw)
        try:
            payload = json.loads(body, parse_constant=_refuse_constant) if body else None
        except ValueError as error:
            data = {"code": "PARSE_ERROR", "httpStatus": 400}
            return self._answer(handler, 400, {"error": {"message": f"invalid JSON: {error}", "code": -32700, "data": data}})
        with self.lock:
            self.requests.append({"procedure": procedure, "headers": dict(handler.headers), "raw": raw, "payload": payload})
            scripted = self.script.get(procedure)
            answer = scripted.pop(0) if scripted else 200
            answer = answer if isinstance(answer, dict) else {"status": answer}
            status = answer["status"]
        if status != 200:
            code = "BAD_REQUEST" if status < 500 else "INTERNAL_SERVER_ERROR"
            data = {"code": code, "httpStatus": status, **({"reason": answer["reason"]} if answer.get("reason") else {})}
            headers = {"Retry-After": str(answer["retry_after"])} if "retry_after" in answer else {}
            return self._answer(handler, status, {"error": {"message": f"scripted {status} for {procedure}", "code": -32600, "data": data}}, headers)
        authorization = handler.headers.get("Authorization", "")
        if authorization[len("Bearer "):] in self.revoked:
            envelope = {"message": "This job token was revoked (a newer token was issued); use the current one", "code": -32001}
            return self._answer(handler, 401, {"error": {**envelope, "data": {"code": "UNAUTHORIZED", "httpStatus": 401, "reason": "token_revoked"}}})
        if not authorization.startswith("Bearer ") or authorization[len("Bearer "):] not in self.tokens:
            return self._answer(handler, 401, {"error": {"message": "bad token", "code": -32001, "data": {"code": "UNAUTHORIZED", "httpStatus": 401}}})
        batch = (payload or {}).get("predictions") or (payload or {}).get("metrics") or []
        if self.max_rows is not None and len(batch) > self.max_rows:
            data = {"code": "PAYLOAD_TOO_LARGE", "httpStatus": 413}
            return self._answer(handler, 413, {"error": {"message": "request entity too large", "code": -32600, "data": data}})
        if self.cancelled:
            # As the real server answers once the job is cancelled: the token is refused, with the reason.
            envelope = {"message": "The job has ended (cancelled); its token no longer accepts writes", "code": -32001}
            return self._answer(handler, 401, {"error": {**envelope, "data": {"code": "UNAUTHORIZED", "httpStatus": 401, "reason": "job_ended"}}})
        return self._answer(handler, 200, {"result": {"data": self._service(procedure, payload)}})

    def _service(self, procedure: str, payload: Any) -> Any:
        if procedure == "pod.writePredictions":
            answer: Dict[str, Any] = {"inserted": 0, "duplicates": 0, "replaced": 0, "altered": 0, "rejected": []}
            with self.lock:
                for index, row in enumerate(payload["predictions"]):
                    if row["sampleIndex"] == self.reject_sample:
                        answer["rejected"].append({"index": index, "reason": "prompt: too long"})
                        continue
                    stored = {k: _storable(v) if isinstance(v, str) else v for k, v in row.items()}
                    key = (row["step"], row["sampleIndex"])
                    before = self.stored.get(key)
                    if before == stored:
                        answer["duplicates"] += 1
                        continue
                    answer["inserted" if before is None else "replaced"] += 1
                    answer["altered"] += stored != row
                    self.stored[key] = stored
            return answer
        if procedure == "pod.writeMetrics":
            answer = {"inserted": 0, "duplicates": 0, "replaced": 0, "rejected": []}
            with self.lock:
                for index, point in enumerate(payload["metrics"]):
                    if any(ord(c) < 32 for c in point["name"]):
                        answer["rejected"].append({"index": index, "reason": "name: name must hold printable characters only (no control characters)"})
                        continue
                    key = (point["name"], point["step"])
                    before = self.metrics.get(key, _MISSING)
                    answer["inserted" if before is _MISSING else "duplicates" if before == point["value"] else "replaced"] += 1
                    self.metrics[key] = point["value"]
            return answer
        if procedure == "pod.heartbeat":
            return {"ok": True}
        if procedure == "pod.log":
            return {"accepted": len(payload["lines"])}
        if procedure == "pod.finish":
            return {"ok": True, "status": payload["status"]}
        return None

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, envelope: Any, headers: Optional[Dict[str, str]] = None) -> None:
        data = json.dumps(envelope).encode()
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


_MISSING = object()


def _restore_module(name: str, previous: Any) -> None:
    if previous is _MISSING:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _storable(text: str) -> str:
    """As the server stores text: U+0000 and lone surrogates become U+FFFD."""
    return "".join("\ufffd" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def read_spool(path: str, kind: str = "prediction") -> List[Dict[str, Any]]:
    """The records of one kind a spool still holds, read from disk as another process would (no
    repair, no lock), by the rules of trainer/pod/spool.ts: seq records minus the done ranges."""
    if not os.path.exists(path):
        return []
    records: List[Dict[str, Any]] = []
    done: List[Tuple[int, int]] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                continue  # being written, or torn
            record = json.loads(line)
            if "done" in record:
                done.extend((start, end) for start, end in record["done"])
            else:
                records.append(record)
    return [r[kind] for r in records if kind in r and not any(start <= r["seq"] <= end for start, end in done)]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class Base(unittest.TestCase):
    def setUp(self) -> None:
        self.server = FakePodServer()
        self.addCleanup(self.server.close)
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.spool_path = os.path.join(self.tmp.name, "spool.jsonl")
        self.output = io.StringIO()
        self.generated_calls: List[List[str]] = []
        self.events: List[str] = []
        # The class (a TrainerCallback where transformers is installed) is chosen now, before any
        # test puts a stand-in torch where transformers would import the real one.
        pc.PredictionsCallback.__new__(pc.PredictionsCallback)

    def use_modules(self, modules: Dict[str, Any]) -> None:
        """Put stand-ins in sys.modules for this test only, restoring exactly what was there."""
        for name, module in modules.items():
            previous = sys.modules.get(name, _MISSING)
            sys.modules[name] = module
            self.addCleanup(_restore_module, name, previous)

    def environ(self, **overrides: Optional[str]) -> Dict[str, str]:
        env = {"JOB_ID": "job-1", "JOB_TOKEN": TOKEN, "API_URL": self.server.url}
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def callback(self, environ: Optional[Dict[str, str]] = None, samples: Optional[List[Dict[str, Any]]] = None, **options: Any) -> pc.PredictionsCallback:
        def generate(prompts: List[str]) -> List[str]:
            self.generated_calls.append(prompts)
            return fake_generate(prompts)

        settings: Dict[str, Any] = dict(
            sample_count=2,
            seed=3,
            generate_fn=generate,
            spool_path=self.spool_path,
            environ=self.environ() if environ is None else environ,
            heartbeat_interval=0.1,
            probe_interval=0.2,
            backoff_base=0.01,
            http_timeout=2.0,
            install_handlers=False,
            stream=self.output,
        )
        settings.update(options)
        callback = pc.PredictionsCallback(make_samples(10) if samples is None else samples, **settings)
        self.addCleanup(callback.close)
        return callback

    def spool_rows(self) -> List[Dict[str, Any]]:
        return read_spool(self.spool_path)

    def heartbeats(self) -> List[Dict[str, Any]]:
        return [c["payload"] for c in self.server.calls("pod.heartbeat")]


class EpochNumberTest(unittest.TestCase):
    def test_fractional_epochs_map_to_the_epoch_they_fall_in(self) -> None:
        cases = {None: 1, 0.0: 1, 0.25: 1, 1.0: 1, 1.0000000001: 1, 1.5: 2, 2.0: 2, 2.0000000001: 2, 2.01: 3}
        for value, expected in cases.items():
            self.assertEqual(pc.epoch_number(value), expected, value)

    def test_fields_are_clipped_to_the_server_limit_in_characters(self) -> None:
        # The server counts code points (zod's max): 16 000 emoji are stored whole, so never cut them.
        text, clipped = pc.clip_field("😀" * 10, limit=7)
        self.assertTrue(clipped)
        self.assertEqual(text, "😀" * 7)
        self.assertEqual(pc.clip_field("😀" * 7, limit=7), ("😀" * 7, False))
        self.assertEqual(pc.clip_field("short"), ("short", False))


class TriggerTest(Base):
    def test_eval_trigger_with_per_epoch_evaluation(self) -> None:
        cb = self.callback(sample_frequency="eval")
        run_fake_training(cb, epochs=3, steps_per_epoch=4, eval_strategy="epoch")
        expected = {(e, 4 * e, i, "eval") for e in (1, 2, 3) for i in range(2)}
        self.assertEqual(self.server.stored_keys(), expected)
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 6, "spooled": 0, "rejected": 0})
        self.assertEqual(cb.counters.trigger_fires, 3)

    def test_eval_trigger_with_step_evaluation_and_a_dict_of_eval_datasets(self) -> None:
        cb = self.callback(sample_frequency="eval")
        run_fake_training(cb, epochs=2, steps_per_epoch=5, eval_strategy="steps", eval_steps=3, eval_datasets=2)
        # Steps 3, 6, 9 at epochs 0.6, 1.2, 1.8: on_evaluate fires twice per step, one batch each.
        expected = {(epoch, step, i, "eval") for epoch, step in ((1, 3), (2, 6), (2, 9)) for i in range(2)}
        self.assertEqual(self.server.stored_keys(), expected)
        self.assertEqual(len(self.generated_calls), 3)
        self.assertEqual(cb.counters.trigger_fires, 3)
        self.assertEqual(sum(len(c["payload"]["predictions"]) for c in self.server.calls("pod.writePredictions")), 6)

    def test_eval_trigger_warns_when_evaluation_is_off(self) -> None:
        cb = self.callback(sample_frequency="eval")
        run_fake_training(cb, epochs=2, steps_per_epoch=2, eval_strategy="no")
        self.assertEqual(self.server.stored_keys(), set())
        self.assertIn('eval_strategy is "no"', self.output.getvalue())
        logged = [line["message"] for call in self.server.calls("pod.log") for line in call["payload"]["lines"]]
        self.assertTrue(any('eval_strategy is "no"' in m for m in logged), logged)

    def test_epoch_trigger(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=3, steps_per_epoch=3, eval_strategy="steps", eval_steps=1)
        expected = {(e, 3 * e, i, "epoch") for e in (1, 2, 3) for i in range(2)}
        self.assertEqual(self.server.stored_keys(), expected)

    def test_steps_trigger(self) -> None:
        cb = self.callback(sample_frequency="steps", step_interval=4)
        run_fake_training(cb, epochs=2, steps_per_epoch=5, eval_strategy="epoch")
        # Step 4 at epoch 0.8, step 8 at epoch 1.6.
        expected = {(1, 4, i, "steps") for i in range(2)} | {(2, 8, i, "steps") for i in range(2)}
        self.assertEqual(self.server.stored_keys(), expected)

    def test_steps_without_step_interval_is_refused_at_construction(self) -> None:
        with self.assertRaisesRegex(ValueError, "step_interval"):
            pc.PredictionsCallback(make_samples(3), sample_frequency="steps", environ={})
        with self.assertRaisesRegex(ValueError, "sample_frequency"):
            pc.PredictionsCallback(make_samples(3), sample_frequency="sometimes", environ={})

    def test_the_same_samples_are_predicted_at_every_fire(self) -> None:
        cb = self.callback(sample_frequency="epoch", sample_count=3)
        run_fake_training(cb, epochs=3, steps_per_epoch=2)
        self.assertEqual(len(self.generated_calls), 3)
        self.assertTrue(all(call == self.generated_calls[0] for call in self.generated_calls))
        again = pc.PredictionsCallback(make_samples(10), sample_count=3, seed=3, environ={}, spool_path=self.spool_path, stream=io.StringIO())
        self.assertEqual([s["prompt"] for s in again.samples], self.generated_calls[0])

    def test_samples_accept_response_and_output_keys(self) -> None:
        samples = [{"prompt": "a", "response": "r"}, {"prompt": "b", "output": "o"}]
        cb = pc.PredictionsCallback(samples, sample_count=2, environ={}, spool_path=self.spool_path, stream=io.StringIO())
        self.assertEqual(sorted(s["groundTruth"] for s in cb.samples), ["o", "r"])

    def test_other_processes_write_nothing(self) -> None:
        cb = self.callback(sample_frequency="steps", step_interval=1)
        run_fake_training(cb, epochs=2, steps_per_epoch=3, eval_strategy="steps", eval_steps=1, world_process_zero=False)
        time.sleep(0.3)  # a writer thread, had one started, would have sent a heartbeat by now
        self.assertEqual(self.server.requests, [])
        self.assertEqual(self.generated_calls, [])
        self.assertFalse(os.path.exists(self.spool_path))

    def test_unused_trainer_events_are_no_ops(self) -> None:
        cb = self.callback()
        self.assertIsNone(cb.on_save(None, None, None))
        self.assertIsNone(cb.on_some_future_event(None, None, None, model=None))
        with self.assertRaises(AttributeError):
            cb.not_an_event  # noqa: B018


    def test_an_evaluation_after_training_ended_is_sent_and_the_job_finished_again(self) -> None:
        # trainer.evaluate() after trainer.train() makes rows after on_train_end; a
        # finished job's token takes them for a grace period, so they are sent, not parked.
        cb = self.callback(sample_frequency="eval")
        state = run_fake_training(cb, epochs=1, steps_per_epoch=2, eval_strategy="epoch")
        self.assertEqual(len(self.server.calls("pod.finish")), 1)
        state.global_step += 1  # a manual trainer.evaluate() at a new step
        cb.on_evaluate(None, state, None)
        self.assertEqual(len(self.server.stored), 4)
        self.assertEqual(self.spool_rows(), [])
        self.assertEqual(cb.counters.snapshot(), {"generated": 4, "persisted": 4, "spooled": 0, "rejected": 0})
        self.assertEqual(len(self.server.calls("pod.finish")), 2)  # idempotent on the server

    def test_a_second_train_fires_again_from_step_one(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=2)
        run_fake_training(cb, epochs=2, steps_per_epoch=2)
        # Steps 2 and 4; step 2 of the second run is generated again (replacing, or a duplicate).
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 6, "spooled": 0, "rejected": 0})
        self.assertEqual(self.server.stored_keys(), {(e, 2 * e, i, "epoch") for e in (1, 2) for i in range(2)})


class WireTest(Base):
    def test_bodies_are_gzipped_json_with_the_bearer_token(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=2)
        call = self.server.calls("pod.writePredictions")[0]
        self.assertEqual(call["headers"]["Content-Encoding"], "gzip")
        self.assertEqual(call["headers"]["Content-Type"], "application/json")
        self.assertEqual(call["headers"]["Authorization"], f"Bearer {TOKEN}")
        decoded = json.loads(gzip.decompress(call["raw"]))
        self.assertEqual(decoded["predictions"][0]["prediction"], "prediction for " + decoded["predictions"][0]["prompt"])
        self.assertEqual(set(decoded["predictions"][0]), {"epoch", "step", "sampleIndex", "trigger", "prompt", "groundTruth", "prediction"})

    def test_heartbeats_report_mode_env_presence_and_counters_then_the_job_finishes(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        # A real step takes long enough for the sender's first beat; the fake loop takes microseconds,
        # so wait for that beat after the first step instead of racing the sender thread.
        run_fake_training(
            cb, epochs=2, steps_per_epoch=2, after_step=lambda step: self.assertTrue(wait_until(lambda: self.server.calls("pod.heartbeat"))) if step == 1 else None
        )
        beats = [c["payload"] for c in self.server.calls("pod.heartbeat")]
        self.assertEqual(beats[0]["status"], "starting")
        self.assertEqual(beats[-1]["status"], "finishing")
        self.assertEqual(beats[-1]["mode"], "cloud")
        self.assertEqual(beats[-1]["env"], {"JOB_ID": True, "JOB_TOKEN": True, "API_URL": True})
        self.assertEqual(beats[-1]["counters"], {"generated": 4, "persisted": 4, "spooled": 0, "rejected": 0})
        self.assertEqual(beats[-1]["triggerFires"], 2)
        self.assertEqual(beats[-1]["step"], 4)
        self.assertEqual(beats[-1]["totalSteps"], 4)
        self.assertNotIn(TOKEN, json.dumps(beats))
        self.assertEqual([c["payload"] for c in self.server.calls("pod.finish")], [{"status": "completed"}])
        self.assertIn("generated=4 persisted=4 spooled=0 rejected=0", self.output.getvalue())

    def test_a_cancelled_job_stops_training_at_the_next_step(self) -> None:
        self.server.cancelled = True
        cb = self.callback(sample_frequency="epoch")
        state = types.SimpleNamespace(epoch=0.0, global_step=0, max_steps=10, is_world_process_zero=True)
        control = types.SimpleNamespace(should_training_stop=False)
        cb.on_train_begin(types.SimpleNamespace(eval_strategy="no"), state, control)
        self.assertTrue(wait_until(lambda: cb.writer.cancelled))
        state.global_step, state.epoch = 1, 0.1
        cb.on_step_end(None, state, control)
        self.assertTrue(control.should_training_stop)

    def test_5xx_is_retried_and_the_rows_are_stored_once(self) -> None:
        self.server.script["pod.writePredictions"] = [500, 503]
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=2)
        self.assertEqual(len(self.server.calls("pod.writePredictions")), 3)
        self.assertEqual(len(self.server.stored), 2)
        self.assertEqual(cb.counters.snapshot(), {"generated": 2, "persisted": 2, "spooled": 0, "rejected": 0})

    def test_4xx_is_not_retried_and_the_rows_count_as_rejected(self) -> None:
        self.server.script["pod.writePredictions"] = [400]
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=2)
        self.assertEqual(len(self.server.calls("pod.writePredictions")), 1)
        self.assertEqual(self.server.stored, {})
        self.assertEqual(cb.counters.snapshot(), {"generated": 2, "persisted": 0, "spooled": 0, "rejected": 2})
        self.assertIn("scripted 400 for pod.writePredictions", self.output.getvalue())

    def test_rows_the_server_rejects_one_by_one_are_counted(self) -> None:
        self.server.reject_sample = 1
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=2, steps_per_epoch=2)
        self.assertEqual(cb.counters.snapshot(), {"generated": 4, "persisted": 2, "spooled": 0, "rejected": 2})
        self.assertIn("prompt: too long", self.output.getvalue())

    def test_server_down_spools_then_drains_when_it_comes_back(self) -> None:
        self.server.down = True
        cb = self.callback(sample_frequency="steps", step_interval=1, retry_attempts=2)
        run_fake_training(cb, epochs=1, steps_per_epoch=3, end_training=False)
        self.assertTrue(cb.flush(timeout=10))
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 0, "spooled": 6, "rejected": 0})
        self.assertEqual(len(self.spool_rows()), 6)
        self.assertIn("spooling predictions", self.output.getvalue())

        self.server.down = False
        self.assertTrue(wait_until(lambda: cb.counters.snapshot()["persisted"] == 6), cb.counters.snapshot())
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 6, "spooled": 0, "rejected": 0})
        self.assertEqual(self.spool_rows(), [])
        self.assertEqual(self.server.stored_keys(), {(1, s, i, "steps") for s in (1, 2, 3) for i in range(2)})

    def test_the_job_is_not_finished_while_rows_remain_spooled(self) -> None:
        self.server.down = True
        cb = self.callback(sample_frequency="epoch", retry_attempts=1)
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        self.assertEqual(self.server.calls("pod.finish"), [])
        self.assertIn("sync --spool", self.output.getvalue())


HOSTILE = ("NUL \x00 inside", "half an emoji \ud83d", "a whole emoji \U0001F600")


def hostile_generate(prompts: List[str]) -> List[str]:
    """Model output as early fine-tuning writes it: a NUL, half an emoji, and a harmless emoji."""
    return [HOSTILE[i % len(HOSTILE)] for i in range(len(prompts))]


class HostileInputTest(Base):
    """What real trainers send: hostile text, NaN losses, odd metric names, resumed runs."""

    def test_a_nul_and_half_an_emoji_are_stored_altered_and_nothing_stays_in_the_spool(self) -> None:
        self.server.down = True  # first through the spool: a lone surrogate must survive a UTF-8 file
        cb = self.callback(sample_frequency="steps", step_interval=1, sample_count=3, generate_fn=hostile_generate, retry_attempts=1)
        run_fake_training(cb, epochs=1, steps_per_epoch=2, end_training=False)
        self.assertTrue(cb.flush(timeout=10))
        self.assertEqual(len(self.spool_rows()), 6)
        self.server.down = False
        self.assertTrue(wait_until(lambda: cb.counters.snapshot()["persisted"] == 6), cb.counters.snapshot())
        cb.close(completed=True)
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 6, "spooled": 0, "rejected": 0})
        self.assertFalse(os.path.exists(self.spool_path))
        self.assertEqual(cb.counters.altered, 4)
        predictions = sorted(row["prediction"] for row in self.server.stored.values())
        self.assertEqual(predictions, sorted(["NUL \ufffd inside", "half an emoji \ufffd", "a whole emoji \U0001F600"] * 2))
        self.assertIn("altered=4", self.output.getvalue())
        self.assertIn("4 prediction(s) had characters PostgreSQL cannot store (NUL, half an emoji) replaced by U+FFFD", self.output.getvalue())

    def test_the_wire_is_strict_json_even_for_half_an_emoji(self) -> None:
        cb = self.callback(sample_frequency="epoch", sample_count=3, generate_fn=hostile_generate)
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        raw = gzip.decompress(self.server.calls("pod.writePredictions")[0]["raw"])
        self.assertIn(b"\\ud83d", raw)  # escaped, as JSON.stringify writes it
        self.assertEqual(len(self.server.stored), 3)

    def test_nan_and_infinite_metrics_travel_as_their_names_and_odd_names_are_kept(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        state = run_fake_training(cb, epochs=1, steps_per_epoch=1, end_training=False)
        cb.on_log(None, state, None, logs={"loss": float("nan"), "grad_norm": float("inf"), "eval_precision@5": 0.25, "epoch": 1.0, "note": "text"})
        self.assertTrue(cb.flush(timeout=10))
        self.assertEqual(self.server.metrics[("loss", 1)], "NaN")
        self.assertEqual(self.server.metrics[("grad_norm", 1)], "Infinity")
        self.assertEqual(self.server.metrics[("eval_precision@5", 1)], 0.25)
        self.assertNotIn(("epoch", 1), self.server.metrics)
        self.assertNotIn(("note", 1), self.server.metrics)
        for call in self.server.calls("pod.writeMetrics"):
            json.loads(gzip.decompress(call["raw"]), parse_constant=_refuse_constant)  # strict JSON, no NaN token

    def test_a_refused_metric_point_is_reported_with_its_reason_and_not_resent(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        state = run_fake_training(cb, epochs=1, steps_per_epoch=1, end_training=False)
        cb.on_log(None, state, None, logs={"bad\x07name": 1.0, "eval_loss": 0.5})
        self.assertTrue(cb.flush(timeout=10))
        self.assertTrue(cb.flush(timeout=10))
        sent = [p["name"] for c in self.server.calls("pod.writeMetrics") for p in c["payload"]["metrics"]]
        self.assertEqual(sent.count("bad\x07name"), 1)
        self.assertEqual(self.server.metrics[("eval_loss", 1)], 0.5)
        self.assertIn("printable characters only", self.output.getvalue())
        cb.close(completed=True)
        self.assertIn("metrics_refused=1", self.output.getvalue())
        self.assertEqual([c["payload"] for c in self.server.calls("pod.finish")], [{"status": "completed"}])

    def test_a_resumed_run_replacing_stored_rows_counts_them_as_persisted(self) -> None:
        for step in (1, 2):
            for index in range(2):
                self.server.stored[(step, index)] = {"step": step, "sampleIndex": index, "prediction": "from the first run"}
        cb = self.callback(sample_frequency="steps", step_interval=1)
        run_fake_training(cb, epochs=1, steps_per_epoch=3)
        self.assertEqual(cb.counters.snapshot(), {"generated": 6, "persisted": 6, "spooled": 0, "rejected": 0})
        self.assertEqual(cb.counters.replaced, 4)
        self.assertIn("replaced=4", self.output.getvalue())
        self.assertIn("replaced rows the server held", self.output.getvalue())


def token_fragments(token: str, size: int = 20) -> List[str]:
    """Every ``size``-character piece of the token: none may appear in anything printed."""
    return [token[i : i + size] for i in range(0, len(token) - size + 1)]


class WriteAheadTest(Base):
    """rows are on disk before they are sent, and leave the spool once acknowledged."""

    def test_rows_are_on_disk_before_they_are_sent(self) -> None:
        self.server.hang = True  # the request is in flight and stays there
        cb = self.callback(sample_frequency="epoch", http_timeout=30.0, exit_timeout=0.5)
        state = types.SimpleNamespace(epoch=1.0, global_step=2, max_steps=2, is_world_process_zero=True)
        cb.on_epoch_end(None, state, None)
        # Nothing acknowledged, the sender stuck in the network: a kill -9 now must lose nothing.
        self.assertEqual({(r["step"], r["sampleIndex"]) for r in self.spool_rows()}, {(2, 0), (2, 1)})
        self.assertTrue(wait_until(lambda: self.server.calls("(hung)")))
        cb.close()
        self.assertEqual(cb.counters.snapshot(), {"generated": 2, "persisted": 0, "spooled": 2, "rejected": 0})

    def test_acknowledged_rows_leave_the_spool(self) -> None:
        cb = self.callback(sample_frequency="steps", step_interval=1)
        run_fake_training(cb, epochs=1, steps_per_epoch=3, end_training=False)
        self.assertTrue(cb.flush(timeout=10))
        self.assertEqual(self.spool_rows(), [])
        self.assertFalse(os.path.exists(self.spool_path))  # everything done: the files go away
        self.assertFalse(os.path.exists(self.spool_path + ".done"))

    def test_a_torn_last_line_is_cut_and_the_next_row_is_not_glued_to_it(self) -> None:
        first = [{"epoch": 1, "step": 1, "sampleIndex": i, "trigger": "steps", "prompt": "p", "groundTruth": "g", "prediction": "x"} for i in range(2)]
        pc.Spool(self.spool_path).append(first)
        with open(self.spool_path, "ab") as handle:
            handle.write(b'{"epoch": 1, "step": 2, "sampleIn')  # kill -9 in the middle of an append
        cb = self.callback(sample_frequency="steps", step_interval=1, environ=self.environ(API_URL=None))
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        keys = sorted((r["step"], r["sampleIndex"]) for r in self.spool_rows())
        self.assertEqual(keys, [(1, 0), (1, 0), (1, 1), (1, 1)])  # the earlier run's and this run's
        self.assertIn("cut short by a killed process", self.output.getvalue())
        self.assertEqual(cb.counters.snapshot(), {"generated": 4, "persisted": 0, "spooled": 4, "rejected": 0})

    def test_a_new_run_of_the_job_uploads_what_the_previous_one_left_and_skips_what_it_had_stored(self) -> None:
        rows = [{"epoch": 1, "step": s, "sampleIndex": 0, "trigger": "eval", "prompt": "p", "groundTruth": "g", "prediction": f"x{s}"} for s in (1, 2, 3)]
        earlier = pc.Spool(self.spool_path)
        ids = earlier.append(rows)
        earlier.ack(ids[:1])  # the earlier run had this one acknowledged, then was killed
        cb = self.callback(sample_frequency="eval")
        run_fake_training(cb, epochs=1, steps_per_epoch=1, eval_strategy="no")
        sent = [r["step"] for c in self.server.calls("pod.writePredictions") for r in c["payload"]["predictions"]]
        self.assertEqual(sorted(sent), [2, 3])
        self.assertEqual(cb.counters.snapshot(), {"generated": 2, "persisted": 2, "spooled": 0, "rejected": 0})
        self.assertIn("left in", self.output.getvalue())
        self.assertFalse(os.path.exists(self.spool_path))

    def test_metric_points_share_the_spool_file(self) -> None:
        self.server.down = True
        cb = self.callback(sample_frequency="epoch", retry_attempts=1)
        state = run_fake_training(cb, epochs=1, steps_per_epoch=2, end_training=False)
        cb.close()
        metrics = read_spool(self.spool_path, "metric")
        self.assertEqual([(m["name"], m["step"]) for m in metrics], [("loss", 1), ("loss", 2)])
        self.server.down = False
        out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": TOKEN, "API_URL": self.server.url}, out=out), 0, out.getvalue())
        self.assertEqual(set(self.server.metrics), {("loss", 1), ("loss", 2)})
        self.assertEqual(len(self.server.stored), 2)
        self.assertIn("2 metric point(s) read, stored=2", out.getvalue())
        del state


class SpoolFormatTest(Base):
    """The spool is the TypeScript trainer's format (trainer/pod/spool.ts): either client's sync reads either's."""

    ROWS = [{"epoch": 1, "step": s, "sampleIndex": 0, "trigger": "eval", "prompt": "p", "groundTruth": "g", "prediction": f"x{s}"} for s in (1, 2, 3)]

    def lines(self) -> List[Dict[str, Any]]:
        with open(self.spool_path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def test_one_file_of_seq_records_and_done_ranges(self) -> None:
        spool = pc.Spool(self.spool_path)
        seqs = spool.append(self.ROWS)
        spool.metrics().append([{"step": 1, "epoch": 1.0, "name": "loss", "value": "NaN"}])
        spool.ack(seqs[:2])
        self.assertEqual(
            self.lines(),
            [{"seq": 0, "prediction": self.ROWS[0]}, {"seq": 1, "prediction": self.ROWS[1]}, {"seq": 2, "prediction": self.ROWS[2]},
             {"seq": 3, "metric": {"step": 1, "epoch": 1.0, "name": "loss", "value": "NaN"}}, {"done": [[0, 1]]}],
        )
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["spool.jsonl"])

    def test_reads_a_spool_written_by_the_typescript_trainer(self) -> None:
        # As trainer/pod/spool.ts leaves it after a kill -9: done ranges, a bare row of its older
        # format, and a torn last line.
        with open(self.spool_path, "w", encoding="utf-8") as handle:
            for seq, row in enumerate(self.ROWS):
                handle.write(json.dumps({"seq": seq, "prediction": row}) + "\n")
            handle.write(json.dumps({"seq": 3, "metric": {"step": 3, "epoch": 1, "name": "loss", "value": 0.5}}) + "\n")
            handle.write(json.dumps({"done": [[0, 0], [2, 2]]}) + "\n")
            handle.write(json.dumps({**self.ROWS[0], "step": 9}) + "\n")
            handle.write('{"seq":4,"predic')
        spool = pc.Spool(self.spool_path)
        self.assertEqual(spool.open(), 2)
        self.assertEqual([row["step"] for _, row in spool.pending()], [2, 9])
        self.assertEqual([row["name"] for _, row in spool.metrics().pending()], ["loss"])
        self.assertGreater(spool.torn_bytes, 0)
        # Rewritten tidy: what is left, numbered, the bare row after the highest seq seen.
        self.assertEqual([(line["seq"], "prediction" in line) for line in self.lines()], [(1, True), (3, False), (4, True)])
        out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": TOKEN, "API_URL": self.server.url}, out=out), 0, out.getvalue())
        self.assertEqual(sorted(self.server.stored), [(2, 0), (9, 0)])
        self.assertEqual(set(self.server.metrics), {("loss", 3)})
        self.assertFalse(os.path.exists(self.spool_path))

    def test_a_spool_of_the_previous_version_is_migrated_once(self) -> None:
        metrics_path = self.spool_path[: -len(".jsonl")] + ".metrics.jsonl"
        with open(self.spool_path, "w", encoding="utf-8") as handle:
            for s, row in enumerate(self.ROWS):
                handle.write(json.dumps({**row, "_id": f"abc-{s}"}) + "\n")
        with open(self.spool_path + ".done", "w", encoding="utf-8") as handle:
            handle.write("abc-0\n")
        with open(metrics_path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": 1, "epoch": 1.0, "name": "loss", "value": 1.0, "_id": "m-1"}) + "\n")
            handle.write(json.dumps({"step": 2, "epoch": 1.0, "name": "loss", "value": 0.5, "_id": "m-2"}) + "\n")
        with open(metrics_path + ".done", "w", encoding="utf-8") as handle:
            handle.write("m-1\n")
        spool = pc.Spool(self.spool_path)
        self.assertEqual(spool.open(), 2)
        self.assertEqual(sorted(os.listdir(self.tmp.name)), ["spool.jsonl"])
        self.assertEqual(
            self.lines(),
            [{"seq": 0, "prediction": self.ROWS[1]}, {"seq": 1, "prediction": self.ROWS[2]},
             {"seq": 2, "metric": {"step": 2, "epoch": 1.0, "name": "loss", "value": 0.5}}],
        )


class AnswersTest(Base):
    """every answer of the server handled, as the TypeScript trainer does."""

    def test_408_and_429_are_retried_waiting_at_least_retry_after(self) -> None:
        self.server.script["pod.writePredictions"] = [{"status": 429, "retry_after": 3}, {"status": 408}, {"status": 503, "retry_after": 2}]
        waits: List[float] = []
        client = pc.PodClient(self.server.url, TOKEN, attempts=5, backoff_base=0.01, sleep=waits.append)
        row = {"epoch": 1, "step": 1, "sampleIndex": 0, "trigger": "eval", "prompt": "p", "groundTruth": "g", "prediction": "x"}
        answer = client.mutate("pod.writePredictions", {"predictions": [row]})
        self.assertEqual(answer["inserted"], 1)
        self.assertEqual(len(self.server.calls("pod.writePredictions")), 4)
        self.assertGreaterEqual(waits[0], 3)  # Retry-After: 3
        self.assertLess(waits[1], 1)  # 408 without Retry-After: the backoff alone
        self.assertGreaterEqual(waits[2], 2)

    def test_retry_after_is_read_from_seconds_or_a_date_and_capped(self) -> None:
        self.assertEqual(pc.parse_retry_after("7"), 7.0)
        self.assertEqual(pc.parse_retry_after("99999"), pc.RETRY_AFTER_MAX)
        self.assertIsNone(pc.parse_retry_after("soon"))
        when = pc.parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60)))
        self.assertTrue(when is not None and 50 < when <= 61, when)

    def test_a_413_splits_the_batch_until_it_fits_and_nothing_is_dropped(self) -> None:
        self.server.max_rows = 3
        cb = self.callback(sample_frequency="epoch", sample_count=10)
        run_fake_training(cb, epochs=2, steps_per_epoch=1)
        self.assertEqual(cb.counters.snapshot(), {"generated": 20, "persisted": 20, "spooled": 0, "rejected": 0})
        self.assertEqual(len(self.server.stored), 20)
        sizes = [len(c["payload"]["predictions"]) for c in self.server.calls("pod.writePredictions")]
        self.assertGreater(sizes[0], 3)  # refused whole, then halved until it fits
        self.assertEqual(sum(size for size in sizes if size <= 3), 20)  # every row sent once in a batch that fit

    def test_a_revoked_token_keeps_every_row_and_says_once_how_to_rotate_and_sync(self) -> None:
        cb = self.callback(sample_frequency="steps", step_interval=1)
        state = run_fake_training(cb, epochs=1, steps_per_epoch=2, end_training=False)
        self.assertTrue(cb.flush(timeout=10))
        self.assertEqual(len(self.server.stored), 4)
        self.server.revoked.add(TOKEN)  # jobs.rotateToken on the job page
        for step in (3, 4):
            state.global_step = step
            cb.on_step_end(None, state, None)
        cb.on_train_end(None, state, None)
        self.assertEqual(cb.counters.snapshot(), {"generated": 8, "persisted": 4, "spooled": 4, "rejected": 0})
        self.assertEqual(sorted((r["step"], r["sampleIndex"]) for r in self.spool_rows()), [(s, i) for s in (3, 4) for i in range(2)])
        out = self.output.getvalue()
        self.assertEqual(out.count("rotate the token on the job page"), 1, out)
        self.assertIn(f"sync --spool {self.spool_path}", out)
        self.assertEqual(self.server.calls("pod.finish"), [])  # a refused token reports nothing
        cb.close()

        new_token = TOKEN.replace("U0VD", "TkVX")
        self.server.tokens = {new_token}
        sync_out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": new_token, "API_URL": self.server.url}, out=sync_out), 0, sync_out.getvalue())
        self.assertIn("inserted=4 duplicates=0", sync_out.getvalue())
        self.assertEqual(len(self.server.stored), 8)
        for fragment in token_fragments(TOKEN) + token_fragments(new_token):
            self.assertNotIn(fragment, out + sync_out.getvalue())

    def test_an_expired_token_keeps_the_rows_and_sync_with_the_expired_token_keeps_them_too(self) -> None:
        expired = {"status": 401, "reason": "token_expired"}
        self.server.script["pod.writePredictions"] = [expired] * 3
        self.server.script["pod.heartbeat"] = [expired] * 50
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        self.assertEqual(cb.counters.snapshot(), {"generated": 2, "persisted": 0, "spooled": 2, "rejected": 0})
        self.assertIn("the job token has expired", self.output.getvalue())
        out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": TOKEN, "API_URL": self.server.url}, out=out), 1)
        self.assertIn("rotate the token on the job page", out.getvalue())
        self.assertEqual(len(self.spool_rows()), 2)

    def test_job_ended_on_a_write_stops_training_and_keeps_the_rows(self) -> None:
        self.server.script["pod.writePredictions"] = [{"status": 401, "reason": "job_ended"}]
        cb = self.callback(sample_frequency="steps", step_interval=1)
        # After the first fire, wait for the sender to meet the refusal (as a slower real step would),
        # instead of racing it: the loop itself takes microseconds.
        state = run_fake_training(
            cb, epochs=1, steps_per_epoch=5, after_step=lambda step: self.assertTrue(wait_until(lambda: cb.writer.cancelled)) if step == 1 else None
        )
        self.assertLess(state.global_step, 5)  # stopped early
        self.assertEqual(cb.counters.snapshot()["persisted"], 0)
        self.assertEqual(len(self.spool_rows()), cb.counters.snapshot()["generated"])

    def test_counters_add_up_in_every_heartbeat(self) -> None:
        cb = self.callback(sample_frequency="steps", step_interval=1, retry_attempts=1, probe_interval=0.1)
        state = run_fake_training(cb, epochs=1, steps_per_epoch=2, end_training=False)
        self.server.down = True
        for step in (3, 4):
            state.global_step = step
            cb.on_step_end(None, state, None)
        self.assertTrue(cb.flush(timeout=10))
        self.server.down = False
        self.assertTrue(wait_until(lambda: cb.counters.snapshot()["persisted"] == 8), cb.counters.snapshot())
        cb.close(completed=True)
        beats = self.heartbeats()
        for beat in beats:
            c = beat["counters"]
            self.assertGreaterEqual(c["generated"], c["persisted"] + c["rejected"] + c["spooled"], beat)
        self.assertEqual(beats[-1]["counters"], {"generated": 8, "persisted": 8, "spooled": 0, "rejected": 0})
        self.assertEqual(cb.counters.pending, 0)

    def test_a_hanging_server_at_exit_leaves_every_row_in_the_spool_within_the_bound(self) -> None:
        self.server.hang = True
        script = f"""
import sys
sys.path.insert(0, {HERE!r})
from predictions_callback import PredictionsCallback
from fake_training import make_samples, fake_generate, run_fake_training
cb = PredictionsCallback(make_samples(5), sample_frequency="steps", step_interval=1, sample_count=2, generate_fn=fake_generate,
                         spool_path={self.spool_path!r}, environ={self.environ()!r}, http_timeout=60.0, exit_timeout=1.0,
                         heartbeat_interval=0.2)
run_fake_training(cb, epochs=1, steps_per_epoch=3)
print("training returned", flush=True)
"""
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("training returned", done.stdout)
        self.assertEqual(sorted((r["step"], r["sampleIndex"]) for r in self.spool_rows()), [(s, i) for s in (1, 2, 3) for i in range(2)])
        self.assertIn("spooled=6", done.stderr)
        self.assertIn(f"sync --spool {self.spool_path}", done.stderr)
        # Bounded by exit_timeout (1 s at train end, 1 s at exit), not by 60 s socket timeouts.
        self.assertLess(elapsed, 50, done.stderr)


class ConfigurationTest(Base):
    """values trimmed, unusable values named (never shown), no credential printed."""

    def test_a_token_and_url_with_a_trailing_newline_work(self) -> None:
        cb = self.callback(sample_frequency="epoch", environ=self.environ(JOB_TOKEN=TOKEN + "\n", API_URL=f" {self.server.url}/\n", JOB_ID="job-1\n"))
        run_fake_training(cb, epochs=2, steps_per_epoch=1)
        self.assertEqual(cb.counters.snapshot(), {"generated": 4, "persisted": 4, "spooled": 0, "rejected": 0})
        self.assertEqual(self.server.calls("pod.writePredictions")[0]["headers"]["Authorization"], f"Bearer {TOKEN}")

    def test_a_token_that_cannot_be_a_job_token_is_a_configuration_error_naming_the_variable(self) -> None:
        for bad in ("not a token", TOKEN + " trailing-garbage", "Bearer " + TOKEN, TOKEN.replace(".", "\x00", 1)):
            output = io.StringIO()
            cb = self.callback(sample_frequency="epoch", environ=self.environ(JOB_TOKEN=bad), stream=output)
            run_fake_training(cb, epochs=1, steps_per_epoch=1)
            printed = output.getvalue()
            self.assertIn("JOB_TOKEN is set but is not a job token", printed)
            self.assertIn("missing env: JOB_TOKEN", printed)
            for fragment in token_fragments(TOKEN, 12) + [bad]:
                self.assertNotIn(fragment, printed)
        self.assertEqual(self.server.requests, [])  # nothing sent with a token that is not one

    def test_an_api_url_that_cannot_be_used_is_named(self) -> None:
        cb = self.callback(sample_frequency="epoch", environ=self.environ(API_URL="http://host with space:3000"))
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        self.assertIn("API_URL is set but is not an http(s) URL", self.output.getvalue())
        self.assertNotIn("host with space", self.output.getvalue())

    def test_no_piece_of_the_token_is_printed_or_logged_under_faults(self) -> None:
        self.server.script["pod.writePredictions"] = [500, {"status": 429, "retry_after": 0}, 413, 400]
        self.server.reject_sample = 1
        cb = self.callback(sample_frequency="steps", step_interval=1, environ=self.environ(JOB_TOKEN=f"  {TOKEN}\r\n"), retry_attempts=2)
        state = run_fake_training(cb, epochs=1, steps_per_epoch=3, end_training=False)
        self.server.down = True
        state.global_step = 4
        cb.on_step_end(None, state, None)
        self.assertTrue(cb.flush(timeout=10))
        self.server.down = False
        self.server.revoked.add(TOKEN)
        state.global_step = 5
        cb.on_step_end(None, state, None)
        cb.close(completed=True)
        logged = json.dumps([c["payload"] for c in self.server.requests if c["procedure"] != "pod.writePredictions"])
        everything = self.output.getvalue() + logged
        self.assertIn("rotate the token", everything)
        for fragment in token_fragments(TOKEN):
            self.assertNotIn(fragment, everything)


class LocalModeTest(Base):
    def test_missing_variables_are_named_and_predictions_spooled(self) -> None:
        env = self.environ(JOB_TOKEN=None, API_URL=None)
        cb = self.callback(environ=env, sample_frequency="epoch")
        run_fake_training(cb, epochs=2, steps_per_epoch=2)
        out = self.output.getvalue()
        self.assertIn("LOCAL MODE", out)
        self.assertIn("JOB_TOKEN, API_URL", out)
        self.assertIn("missing env: JOB_TOKEN, API_URL", out)
        self.assertIn("sync --spool", out)
        self.assertNotIn("job-1", out)  # names, never values
        self.assertEqual(self.server.requests, [])
        rows = self.spool_rows()
        self.assertEqual({(r["epoch"], r["step"], r["sampleIndex"]) for r in rows}, {(e, 2 * e, i) for e in (1, 2) for i in range(2)})
        self.assertEqual(cb.counters.snapshot(), {"generated": 4, "persisted": 0, "spooled": 4, "rejected": 0})

    def test_the_token_value_is_never_printed(self) -> None:
        cb = self.callback(environ=self.environ(JOB_ID=None), sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=1)
        self.assertIn("JOB_ID", self.output.getvalue())
        self.assertNotIn(TOKEN, self.output.getvalue())
        # With the token and URL present, heartbeats still tell the server which variable is
        # missing, but predictions stay in the spool.
        beats = [c["payload"] for c in self.server.calls("pod.heartbeat")]
        self.assertTrue(beats)
        self.assertEqual(beats[-1]["mode"], "local")
        self.assertEqual(beats[-1]["env"], {"JOB_ID": False, "JOB_TOKEN": True, "API_URL": True})
        self.assertEqual(self.server.calls("pod.writePredictions"), [])
        self.assertEqual(len(self.spool_rows()), 2)


class SyncTest(Base):
    def write_spool(self) -> None:
        rows = [
            {"epoch": 1, "step": s, "sampleIndex": i, "trigger": "eval", "prompt": f"p{i}", "groundTruth": "g", "prediction": "x"}
            for s in (5, 10)
            for i in range(3)
        ]
        pc.Spool(self.spool_path).append(rows)
        self.server.stored[(5, 0)] = dict(rows[0])  # already uploaded: comes back as a duplicate

    def test_sync_uploads_a_spool_in_batches(self) -> None:
        self.write_spool()
        env = {**os.environ, "JOB_TOKEN": TOKEN, "API_URL": self.server.url}
        done = subprocess.run(
            [sys.executable, os.path.join(HERE, "predictions_callback.py"), "sync", "--spool", self.spool_path, "--batch-size", "4"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("inserted=5 duplicates=1 replaced=0 altered=0 rejected=0 unsent=0", done.stdout)
        self.assertEqual(len(self.server.calls("pod.writePredictions")), 2)
        self.assertEqual(len(self.server.stored), 6)
        self.assertFalse(os.path.exists(self.spool_path))

    def test_sync_names_missing_variables(self) -> None:
        self.write_spool()
        out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": TOKEN}, out=out), 2)
        self.assertIn("API_URL", out.getvalue())
        self.assertNotIn(TOKEN, out.getvalue())

    def test_sync_keeps_what_it_could_not_send(self) -> None:
        self.write_spool()
        self.server.down = True
        out = io.StringIO()
        self.assertEqual(pc.sync(self.spool_path, {"JOB_TOKEN": TOKEN, "API_URL": self.server.url}, attempts=1, out=out), 1)
        self.assertEqual(len(self.spool_rows()), 6)


# --- A stand-in for torch and a text model (the unit suite needs neither installed) -------------


class FakeTensor:
    """What the callback asks of a tensor: the rows back as lists."""

    def __init__(self, rows: Any, dtype: Any = None, device: Any = None) -> None:
        self.rows = [list(row) for row in rows] if isinstance(rows, list) and rows and isinstance(rows[0], list) else rows
        self.dtype = dtype
        self.device = device
        self.value = rows[0] if isinstance(rows, list) and rows and not isinstance(rows[0], list) else None

    def tolist(self) -> Any:
        return [list(row) for row in self.rows]

    def item(self) -> Any:
        return self.value


def fake_torch_module(events: Optional[List[str]] = None) -> types.ModuleType:
    @contextlib.contextmanager
    def no_grad() -> Any:
        if events is not None:
            events.append("no_grad on")
        yield
        if events is not None:
            events.append("no_grad off")

    torch = types.ModuleType("torch")
    torch.no_grad = no_grad  # type: ignore[attr-defined]
    torch.tensor = FakeTensor  # type: ignore[attr-defined]
    torch.long = "long"  # type: ignore[attr-defined]
    torch.int32 = "int32"  # type: ignore[attr-defined]
    torch.device = lambda *parts: ":".join(str(part) for part in parts)  # type: ignore[attr-defined]
    return torch


PAD_ID, EOS_ID, BOS_ID, START_ID = 0, 1, 2, 3
SPECIAL_IDS = {PAD_ID, EOS_ID, BOS_ID, START_ID}


class CharTokenizer:
    """One token per character (id = code point), plus pad/eos/bos/start ids below 32; like a 4.x
    fast tokenizer it returns token_type_ids nobody asked for."""

    pad_token_id: Optional[int] = PAD_ID
    eos_token_id = EOS_ID
    bos_token_id = BOS_ID
    model_max_length = int(1e30)  # "no limit", as transformers says it
    truncation_side = "right"
    padding_side = "right"
    chat_template: Optional[str] = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []

    def __call__(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> Dict[str, Any]:
        self.calls.append({"text": text, "add_special_tokens": add_special_tokens, **kwargs})
        ids = ([BOS_ID] if add_special_tokens else []) + [ord(c) for c in text]
        return {"input_ids": ids, "token_type_ids": [0] * len(ids), "attention_mask": [1] * len(ids)}

    def decode(self, ids: List[int], skip_special_tokens: bool = False) -> str:
        return "".join(("" if skip_special_tokens else f"[{i}]") if i in SPECIAL_IDS else chr(i) for i in ids)

    def apply_chat_template(self, messages: List[Dict[str, Any]], tokenize: bool = True, add_generation_prompt: bool = False) -> str:
        assert tokenize is False
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")


class TextModel:
    """A model.generate stand-in that refuses what a model's forward does not take (as transformers
    does) and answers from what it can see: the real (unmasked) tokens of each row."""

    main_input_name = "input_ids"
    device = "cpu"

    def __init__(self, *, encoder_decoder: bool = False, context: Optional[int] = None, sharded: bool = False) -> None:
        self.config = types.SimpleNamespace(is_encoder_decoder=encoder_decoder, decoder_start_token_id=START_ID if encoder_decoder else None)
        if context is not None:
            self.config.n_positions = context
        if sharded:
            self._is_fsdp_managed_module = True
        self.generation_config = types.SimpleNamespace(decoder_start_token_id=self.config.decoder_start_token_id, do_sample=True)
        self.training = True
        self.calls: List[Dict[str, Any]] = []

    def forward(self, input_ids: Any, attention_mask: Any = None, labels: Any = None) -> None:
        raise AssertionError("generate only")

    def eval(self) -> None:
        self.training = False

    def train(self) -> None:
        self.training = True

    def answer(self, seen: List[int]) -> List[int]:
        """What this model says: the number of tokens it saw and the last one (where it continues from)."""
        return [ord(c) for c in f" saw {len(seen)} after {chr(seen[-1]) if seen[-1] > 31 else seen[-1]}"] + [EOS_ID]

    def generate(self, **kwargs: Any) -> FakeTensor:
        unknown = sorted(set(kwargs) - {"input_ids", "attention_mask", "max_new_tokens", "pad_token_id", "do_sample", "num_beams", "temperature"})
        if unknown:
            raise ValueError(f"The following `model_kwargs` are not used by the model: {unknown}")
        ids = kwargs["input_ids"].tolist()
        mask = kwargs["attention_mask"].tolist() if "attention_mask" in kwargs else [[1] * len(row) for row in ids]
        self.calls.append({**kwargs, "ids": ids, "mask": mask, "training": self.training})
        rows = []
        for row, row_mask in zip(ids, mask):
            # A decoder continues from the last position, pad or not: right padding shows.
            seen = [token for token, keep in zip(row, row_mask) if keep] if self.config.is_encoder_decoder else row
            answer = self.answer(seen)[: kwargs["max_new_tokens"]]
            rows.append([START_ID] + answer if self.config.is_encoder_decoder else row + answer)
        width = max(len(row) for row in rows)
        return FakeTensor([row + [PAD_ID] * (width - len(row)) for row in rows])


def spoken(model: TextModel, prompt_ids: List[int]) -> str:
    return CharTokenizer().decode(model.answer(prompt_ids), skip_special_tokens=True)


class GenerationTest(Base):
    """The default generation: model.generate as transformers' models take it."""

    def fire(
        self, model: Any, samples: List[Dict[str, Any]], *, tokenizer: Any = None, processing_class: Any = None, **options: Any
    ) -> Dict[str, Dict[str, Any]]:
        """One epoch of two steps with the epoch trigger; the stored rows by ground truth."""
        settings: Dict[str, Any] = dict(generate_fn=None, tokenizer=tokenizer, sample_frequency="epoch", sample_count=len(samples), max_new_tokens=40)
        settings.update(options)
        self.cb = self.callback(samples=samples, **settings)
        self.use_modules({"torch": fake_torch_module(self.events)})
        run_fake_training(self.cb, epochs=1, steps_per_epoch=2, model=model, processing_class=processing_class)
        self.cb.close()
        self.assertTrue(all(row["step"] == 2 for row in self.server.stored.values()))
        return {row["groundTruth"]: row for row in self.server.stored.values()}

    def test_generates_in_eval_mode_under_no_grad_and_restores_training_mode(self) -> None:
        model = TextModel()
        rows = self.fire(model, [{"prompt": "hi", "completion": "hello"}], tokenizer=CharTokenizer())
        self.assertTrue(model.training)
        self.assertEqual([call["training"] for call in model.calls], [False])
        self.assertEqual(self.events, ["no_grad on", "no_grad off"])
        self.assertEqual(rows["hello"]["prediction"], spoken(model, [BOS_ID, ord("h"), ord("i")]))

    def test_decoder_only_predictions_are_the_new_tokens_only(self) -> None:
        model = TextModel()
        rows = self.fire(model, [{"prompt": "what is two", "completion": "2"}], tokenizer=CharTokenizer())
        self.assertEqual(rows["2"]["prediction"], " saw 12 after o")

    def test_encoder_decoder_predictions_are_the_whole_answer(self) -> None:
        # generate() returns the decoder's sequence alone (start token, answer): cutting the
        # prompt's length off it, as for a decoder, lost the answer's first len(prompt) tokens.
        model = TextModel(encoder_decoder=True)
        rows = self.fire(model, [{"prompt": "what is two", "completion": "2"}], tokenizer=CharTokenizer())
        self.assertEqual(rows["2"]["prediction"], " saw 12 after o")

    def test_only_input_ids_and_attention_mask_reach_generate(self) -> None:
        # The tokenizer returns token_type_ids; a model whose forward does not take them makes
        # generate() raise, which failed every fire.
        model = TextModel()
        rows = self.fire(model, [{"prompt": "hi", "completion": "hello"}], tokenizer=CharTokenizer())
        self.assertEqual(len(rows), 1, self.output.getvalue())
        self.assertNotIn("token_type_ids", model.calls[0])
        self.assertEqual(model.calls[0]["mask"], [[1, 1, 1]])

    def test_decoding_is_greedy_even_when_the_generation_config_samples(self) -> None:
        model = TextModel()  # its generation_config says do_sample=True
        self.fire(model, [{"prompt": "hi", "completion": "hello"}], tokenizer=CharTokenizer())
        self.assertEqual((model.calls[0]["do_sample"], model.calls[0]["num_beams"]), (False, 1))

    def test_generation_kwargs_override_the_greedy_default(self) -> None:
        model = TextModel()
        self.fire(model, [{"prompt": "hi", "completion": "hello"}], tokenizer=CharTokenizer(), generation_kwargs={"do_sample": True, "temperature": 0.7})
        self.assertEqual((model.calls[0]["do_sample"], model.calls[0]["temperature"]), (True, 0.7))
        for refused in ({"input_ids": []}, {"max_new_tokens": 3}, {"num_return_sequences": 2}):
            with self.assertRaises(ValueError):
                pc.PredictionsCallback(make_samples(2), generation_kwargs=refused, environ={}, spool_path=self.spool_path, stream=io.StringIO())

    def test_prompts_are_batched_and_left_padded_for_a_decoder(self) -> None:
        model = TextModel()
        tokenizer = CharTokenizer()
        samples = [{"prompt": prompt, "completion": f"answer to {prompt}"} for prompt in ("a", "bbb", "cc", "dddd", "e")]
        rows = self.fire(model, samples, tokenizer=tokenizer, batch_size=2)
        self.assertEqual([len(call["ids"]) for call in model.calls], [2, 2, 1])
        prompts = iter(sample["prompt"] for sample in self.cb.samples)  # the order they were chosen in
        for call in model.calls:
            width = max(len(prompt) for prompt in [next(prompts) for _ in call["ids"]]) + 1
            for ids, mask in zip(call["ids"], call["mask"]):
                real = sum(mask)
                self.assertEqual(mask, [0] * (width - real) + [1] * real)  # padding on the left, behind the mask
                self.assertEqual(ids[: width - real], [PAD_ID] * (width - real))
                self.assertEqual(ids[width - real], BOS_ID)
        self.assertTrue(any(0 in row for call in model.calls for row in call["mask"]))
        for sample in samples:
            # Every answer continues from its own prompt's last character, whatever its batch.
            self.assertTrue(rows[sample["completion"]]["prediction"].endswith(f"after {sample['prompt'][-1]}"), rows[sample["completion"]])
        self.assertEqual(tokenizer.padding_side, "right")  # the tokenizer Trainer shares is untouched

    def test_an_encoder_decoder_batch_is_padded_on_the_right_behind_its_mask(self) -> None:
        model = TextModel(encoder_decoder=True)
        rows = self.fire(model, [{"prompt": "a", "completion": "x"}, {"prompt": "bbb", "completion": "y"}], tokenizer=CharTokenizer())
        self.assertEqual(sorted(model.calls[0]["mask"]), [[1, 1, 0, 0], [1, 1, 1, 1]])
        self.assertEqual((rows["x"]["prediction"], rows["y"]["prediction"]), (" saw 2 after a", " saw 4 after b"))

    def test_a_prompt_longer_than_the_context_keeps_its_end_and_the_row_keeps_it_whole(self) -> None:
        model = TextModel(context=16)
        prompt = "the start is cut off, the end is kept: x"
        rows = self.fire(model, [{"prompt": prompt, "completion": "y"}], tokenizer=CharTokenizer(), max_new_tokens=6)
        self.assertEqual(model.calls[0]["ids"], [[ord(c) for c in prompt[-10:]]])  # 16 positions, 6 of them for the answer
        self.assertEqual(rows["y"]["prompt"], prompt)
        self.assertEqual(rows["y"]["prediction"], " saw 1")
        self.assertIn("cut to its last 10", self.output.getvalue())

    def test_the_tokenizer_limit_and_max_prompt_tokens_bound_the_prompt_too(self) -> None:
        tokenizer = CharTokenizer()
        tokenizer.model_max_length = 12
        model = TextModel()
        self.fire(model, [{"prompt": "abcdefghijkl", "completion": "y"}], tokenizer=tokenizer, max_new_tokens=4)
        self.assertEqual(model.calls[0]["ids"], [[ord(c) for c in "efghijkl"]])
        model = TextModel()
        self.server.stored.clear()
        self.fire(model, [{"prompt": "abcdefghijkl", "completion": "y"}], tokenizer=CharTokenizer(), max_prompt_tokens=3)
        self.assertEqual(model.calls[0]["ids"], [[ord(c) for c in "jkl"]])

    def test_an_encoder_keeps_the_start_of_a_long_prompt(self) -> None:
        tokenizer = CharTokenizer()
        tokenizer.model_max_length = 5
        model = TextModel(encoder_decoder=True)
        self.fire(model, [{"prompt": "abcdefgh", "completion": "y"}], tokenizer=tokenizer, max_new_tokens=30)
        self.assertEqual(model.calls[0]["ids"], [[BOS_ID] + [ord(c) for c in "abcd"]])

    def test_conversations_are_rendered_with_the_chat_template(self) -> None:
        conversation = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}]
        samples = [
            {"messages": conversation + [{"role": "assistant", "content": "4"}]},
            {"prompt": conversation, "completion": [{"role": "assistant", "content": "four"}]},  # TRL's prompt-completion
        ]
        model = TextModel()
        tokenizer = CharTokenizer()
        rows = self.fire(model, samples, tokenizer=tokenizer)
        rendered = "<system>be brief<user>2+2?<assistant>"
        self.assertEqual((rows["4"]["prompt"], rows["four"]["prompt"]), (rendered, rendered))
        # The rendered template holds its own special tokens: none are added when it is tokenized.
        self.assertEqual(model.calls[0]["ids"][0], [ord(c) for c in rendered])
        self.assertEqual(rows["4"]["prediction"], f" saw {len(rendered)} after >")

    def test_conversations_are_rendered_with_the_processing_class_when_no_tokenizer_was_given(self) -> None:
        cb = self.callback(samples=[{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}], sample_frequency="epoch")
        run_fake_training(cb, epochs=1, steps_per_epoch=1, processing_class=CharTokenizer())
        cb.close()
        self.assertEqual([row["prompt"] for row in self.server.stored.values()], ["<user>hi<assistant>"])
        self.assertEqual(self.generated_calls, [["<user>hi<assistant>"]])

    def test_a_tokenizer_without_a_chat_template_is_a_clear_error(self) -> None:
        tokenizer = CharTokenizer()
        tokenizer.chat_template = None
        samples = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
        with self.assertRaisesRegex(ValueError, "chat template"):
            pc.PredictionsCallback(samples, tokenizer=tokenizer, environ={}, spool_path=self.spool_path, stream=io.StringIO())
        # Given by Trainer only: refused when training begins, not at the first evaluation.
        cb = pc.PredictionsCallback(samples, sample_frequency="epoch", environ={}, spool_path=self.spool_path, stream=io.StringIO())
        self.addCleanup(cb.close)
        with self.assertRaisesRegex(ValueError, "chat template"):
            run_fake_training(cb, epochs=1, steps_per_epoch=1, processing_class=tokenizer)

    def test_samples_that_cannot_be_predicted_are_refused_by_index(self) -> None:
        for sample, message in (
            ({"question": "?"}, "neither 'prompt' nor 'messages'"),
            ({"messages": [{"role": "assistant", "content": "only the answer"}]}, "only the assistant's answer"),
            ({"messages": [{"role": "user", "content": "no answer"}]}, "needs one of the keys"),
            ({"messages": "not a list"}, "list of"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                pc.PredictionsCallback([sample], environ={}, spool_path=self.spool_path, stream=io.StringIO())


class DistributedTest(Base):
    """Several ranks: who generates, who writes, who stops."""

    def process_group(self, *, world_size: int = 2, backend: str = "gloo", decide: Optional[int] = None) -> List[Tuple[int, Any]]:
        """A stand-in torch.distributed; ``decide`` is what rank 0 answers to every broadcast."""
        broadcasts: List[Tuple[int, Any]] = []
        dist = types.ModuleType("torch.distributed")
        dist.is_available = lambda: True  # type: ignore[attr-defined]
        dist.is_initialized = lambda: True  # type: ignore[attr-defined]
        dist.get_world_size = lambda: world_size  # type: ignore[attr-defined]
        dist.get_backend = lambda: backend  # type: ignore[attr-defined]

        def broadcast(flag: FakeTensor, src: int) -> None:
            broadcasts.append((flag.value, flag.device))
            if decide is not None:
                flag.value = decide

        dist.broadcast = broadcast  # type: ignore[attr-defined]
        torch = fake_torch_module(self.events)
        torch.distributed = dist  # type: ignore[attr-defined]
        self.use_modules({"torch": torch, "torch.distributed": dist})
        return broadcasts

    def rank(self, model: Any, *, world_zero: bool, args: Any = None) -> pc.PredictionsCallback:
        cb = self.callback(generate_fn=None, tokenizer=CharTokenizer(), sample_frequency="steps", step_interval=2)
        run_fake_training(cb, epochs=1, steps_per_epoch=4, model=model, world_process_zero=world_zero, args=args)
        return cb

    def test_plain_ddp_generates_on_rank_zero_alone(self) -> None:
        self.process_group()
        model = TextModel()
        self.rank(model, world_zero=False)
        self.assertEqual(model.calls, [])
        self.assertEqual(self.server.requests, [])

    def test_sharded_parameters_generate_on_every_rank_and_only_rank_zero_writes(self) -> None:
        # FSDP2 marks the module; generate() then all-reduces at every decoding step, so a rank
        # that did not generate would leave rank 0 waiting for ever.
        self.process_group()
        other = TextModel(sharded=True)
        self.rank(other, world_zero=False)
        main = TextModel(sharded=True)
        cb = self.rank(main, world_zero=True)
        cb.close()
        self.assertEqual([call["ids"] for call in other.calls], [call["ids"] for call in main.calls])
        self.assertEqual(len(other.calls), 2)  # steps 2 and 4, the same prompts in the same batches
        self.assertEqual(self.server.stored_keys(), {(1, step, i, "steps") for step in (2, 4) for i in range(2)})

    def test_zero3_and_fsdp_arguments_count_as_sharded(self) -> None:
        self.process_group()
        deepspeed = types.ModuleType("transformers.integrations.deepspeed")
        deepspeed.is_deepspeed_zero3_enabled = lambda: True  # type: ignore[attr-defined]
        self.assertFalse(pc.generation_is_collective(TextModel(), types.SimpleNamespace(fsdp=[])))
        self.assertTrue(pc.generation_is_collective(TextModel(), types.SimpleNamespace(fsdp=True)))
        self.assertTrue(pc.generation_is_collective(TextModel(), types.SimpleNamespace(fsdp=["full_shard"])))
        self.use_modules({"transformers.integrations.deepspeed": deepspeed})
        self.assertTrue(pc.generation_is_collective(TextModel(), types.SimpleNamespace(fsdp=None)))

    def test_fsdp1_gathers_the_root_parameters_while_generating(self) -> None:
        # FSDP1 hands callbacks the wrapped module, whose root parameters stay sharded outside its
        # own forward; generate() is not that forward ("'weight' must be 2-D" on a real run).
        self.process_group()
        gathered: List[Dict[str, Any]] = []

        class FullyShardedDataParallel(TextModel):
            @staticmethod
            @contextlib.contextmanager
            def summon_full_params(module: Any, writeback: bool = True, recurse: bool = True) -> Any:
                gathered.append({"writeback": writeback, "recurse": recurse, "open": True})
                yield
                gathered[-1]["open"] = False

            def generate(self, **kwargs: Any) -> FakeTensor:
                assert gathered and gathered[-1]["open"], "generate() ran with the root parameters sharded"
                return super().generate(**kwargs)

        fsdp = types.ModuleType("torch.distributed.fsdp")
        fsdp.FullyShardedDataParallel = FullyShardedDataParallel  # type: ignore[attr-defined]
        self.use_modules({"torch.distributed.fsdp": fsdp})
        model = FullyShardedDataParallel()
        self.assertTrue(pc.generation_is_collective(model, types.SimpleNamespace()))
        self.rank(model, world_zero=False)
        self.assertEqual(len(model.calls), 2)
        self.assertEqual([(g["writeback"], g["recurse"], g["open"]) for g in gathered], [(False, False, False)] * 2)

    def test_one_process_is_never_sharded(self) -> None:
        self.process_group(world_size=1)
        self.assertFalse(pc.generation_is_collective(TextModel(sharded=True), types.SimpleNamespace(fsdp=True)))

    def test_rank_zeros_stop_reaches_every_rank_at_the_same_step(self) -> None:
        broadcasts = self.process_group(decide=1)  # rank 0 learnt the job ended
        cb = self.callback(sample_frequency="epoch")
        state = types.SimpleNamespace(epoch=0.1, global_step=1, max_steps=10, is_world_process_zero=False)
        control = types.SimpleNamespace(should_training_stop=False)
        cb.on_step_end(types.SimpleNamespace(device="cpu"), state, control)  # a rank that never talks to the server
        self.assertTrue(control.should_training_stop)
        self.assertEqual(broadcasts, [(0, "cpu")])  # it offered "go on"; rank 0's "stop" won

    def test_rank_zero_offers_its_stop_and_every_rank_asks_every_step(self) -> None:
        broadcasts = self.process_group(backend="nccl")
        cb = self.callback(sample_frequency="epoch")
        control = types.SimpleNamespace(should_training_stop=False)
        for step, cancelled in ((1, False), (2, True)):
            cb.writer.cancelled = cancelled
            state = types.SimpleNamespace(epoch=step / 10, global_step=step, max_steps=10, is_world_process_zero=True)
            cb.on_step_end(types.SimpleNamespace(device="cuda:3"), state, control)
        # NCCL moves the rank's own CUDA tensors: the flag is made on the training device.
        self.assertEqual(broadcasts, [(0, "cuda:3"), (1, "cuda:3")])
        self.assertTrue(control.should_training_stop)

    def test_after_a_stop_the_best_model_is_not_generated_again(self) -> None:
        self.process_group(decide=1)
        model = TextModel(sharded=True)
        cb = self.callback(generate_fn=None, tokenizer=CharTokenizer(), sample_frequency="steps", step_interval=100)
        run_fake_training(cb, epochs=1, steps_per_epoch=3, model=model, world_process_zero=False, best_step=2)
        self.assertEqual(model.calls, [])


class BestModelTest(Base):
    """load_best_model_at_end: the model Trainer keeps is predicted too."""

    def test_the_best_models_predictions_are_recorded_at_its_step(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        run_fake_training(cb, epochs=2, steps_per_epoch=3, best_step=2)
        # Epoch ends at 3 and 6; the best checkpoint, step 2 (epoch 0.67: the first), once more at the end.
        self.assertEqual(self.server.stored_keys(), {(e, s, i, "epoch") for e, s in ((1, 2), (1, 3), (2, 6)) for i in range(2)})
        self.assertEqual(len(self.generated_calls), 3)
        logged = [line["message"] for call in self.server.calls("pod.log") for line in call["payload"]["lines"]]
        self.assertTrue(any("checkpoint-2" in m and "step 2" in m for m in logged), logged)

    def test_without_load_best_model_at_end_nothing_more_is_generated(self) -> None:
        cb = self.callback(sample_frequency="epoch")
        state = run_fake_training(cb, epochs=1, steps_per_epoch=3)
        self.assertIsNone(pc.best_checkpoint_step(types.SimpleNamespace(load_best_model_at_end=False), state))
        self.assertEqual(len(self.generated_calls), 1)

    def test_the_step_comes_from_the_checkpoint_name_on_older_transformers(self) -> None:
        args = types.SimpleNamespace(load_best_model_at_end=True)
        state = types.SimpleNamespace(best_model_checkpoint="/out/checkpoint-40/", best_global_step=None)
        self.assertEqual(pc.best_checkpoint_step(args, state), ("/out/checkpoint-40/", 40))
        state.log_history = [{"step": 40, "epoch": 1.5, "eval_loss": 0.3}]
        self.assertEqual(pc.epoch_at_step(state, 40), 2)


class TrainerCallbackBaseTest(unittest.TestCase):
    """With transformers installed the callback is a TrainerCallback (add_callback's annotation)."""

    def test_a_trainer_callback_when_transformers_is_importable(self) -> None:
        class TrainerCallback:
            def on_save(self, *args: Any, **kwargs: Any) -> None:
                return None

        transformers = types.ModuleType("transformers")
        transformers.TrainerCallback = TrainerCallback  # type: ignore[attr-defined]
        previous = sys.modules.get("transformers", _MISSING)
        sys.modules["transformers"] = transformers
        self.addCleanup(_restore_module, "transformers", previous)

        class Mine(pc.PredictionsCallback):  # a class of its own: the base is chosen once per class
            pass

        with tempfile.TemporaryDirectory() as tmp:
            cb = Mine(make_samples(3), environ={}, spool_path=os.path.join(tmp, "spool.jsonl"), stream=io.StringIO())
            self.assertIsInstance(cb, TrainerCallback)
            self.assertIsInstance(cb, Mine)
            self.assertIsInstance(cb, pc.PredictionsCallback)
            self.assertEqual(type(cb).__name__, "Mine")
            cb.close()

    def test_importing_the_module_imports_neither_transformers_nor_torch(self) -> None:
        code = f"import sys; sys.path.insert(0, {HERE!r}); import predictions_callback; print(sorted({{'torch', 'transformers'}} & set(sys.modules)))"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        self.assertEqual(done.stdout.strip(), "[]", done.stderr)


class SigtermTest(unittest.TestCase):
    def test_sigterm_flushes_to_the_spool_and_chains_the_previous_handler(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            spool = os.path.join(tmp, "spool.jsonl")
            script = f"""
import os, signal, sys, time
sys.path.insert(0, {HERE!r})
from predictions_callback import PredictionsCallback
from fake_training import make_samples, fake_generate, run_fake_training
def previous(signum, frame):
    print("previous handler ran", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, previous)
cb = PredictionsCallback(make_samples(5), sample_frequency="epoch", sample_count=2, generate_fn=fake_generate,
                         spool_path={spool!r}, environ={{}})
run_fake_training(cb, epochs=2, steps_per_epoch=1, end_training=False)
os.kill(os.getpid(), signal.SIGTERM)
time.sleep(5)
print("not reached", flush=True)
"""
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertIn("previous handler ran", done.stdout)
            self.assertNotIn("not reached", done.stdout)
            self.assertIn("spooled=4", done.stderr)
            self.assertEqual(len(read_spool(spool)), 4)


if __name__ == "__main__":
    unittest.main()
