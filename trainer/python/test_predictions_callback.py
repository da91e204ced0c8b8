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
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import predictions_callback as pc  # noqa: E402
from fake_training import fake_generate, make_samples, run_fake_training  # noqa: E402

TOKEN = "test-token-SECRET-value"


class FakePodServer:
    """A pod.* server double: stores rows idempotently on (step, sampleIndex), like the real one.

    ``script[procedure]`` is a list of HTTP statuses answered (with an error envelope) before
    normal service resumes; ``down`` drops every connection without an answer; ``reject_sample``
    makes writePredictions refuse rows with that sampleIndex (per-row ``rejected``). Like the
    real server it parses strict JSON (a bare ``NaN`` token is a 400), answers a key stored with
    other content as ``replaced``, stores NUL and lone surrogates as U+FFFD counted ``altered``,
    and refuses metric rows one by one (a name with a control character).
    """

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        self.stored: Dict[tuple, Dict[str, Any]] = {}
        self.metrics: Dict[tuple, Any] = {}
        self.script: Dict[str, List[int]] = {}
        self.down = False
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
        procedure = handler.path.split("?")[0][len("/trpc/"):]
        body = raw
        if raw is not None and handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(raw)
        try:
            payload = json.loads(body, parse_constant=_refuse_constant) if body else None
        except ValueError as error:
            return self._answer(handler, 400, {"error": {"message": f"invalid JSON: {error}", "code": -32700, "data": {"code": "PARSE_ERROR", "httpStatus": 400}}})
        with self.lock:
            self.requests.append({"procedure": procedure, "headers": dict(handler.headers), "raw": raw, "payload": payload})
            scripted = self.script.get(procedure)
            status = scripted.pop(0) if scripted else 200
        if status != 200:
            code = "BAD_REQUEST" if status < 500 else "INTERNAL_SERVER_ERROR"
            return self._answer(handler, status, {"error": {"message": f"scripted {status} for {procedure}", "code": -32600, "data": {"code": code, "httpStatus": status}}})
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(handler, 401, {"error": {"message": "bad token", "code": -32001, "data": {"code": "UNAUTHORIZED", "httpStatus": 401}}})
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
            return {"ok": True, "cancelled": False}
        if procedure == "pod.log":
            return {"accepted": len(payload["lines"])}
        if procedure == "pod.finish":
            return {"ok": True, "status": payload["status"]}
        return None

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, envelope: Any) -> None:
        data = json.dumps(envelope).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


_MISSING = object()


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _storable(text: str) -> str:
    """As the server stores text: U+0000 and lone surrogates become U+FFFD."""
    return "".join("\ufffd" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def wait_until(predicate, timeout: float = 10.0) -> bool:
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

    def environ(self, **overrides: Optional[str]) -> Dict[str, str]:
        env = {"JOB_ID": "job-1", "JOB_TOKEN": TOKEN, "API_URL": self.server.url}
        env.update(overrides)
        return {k: v for k, v in env.items() if v is not None}

    def callback(self, environ: Optional[Dict[str, str]] = None, **options: Any) -> pc.PredictionsCallback:
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
        callback = pc.PredictionsCallback(make_samples(10), **settings)
        self.addCleanup(callback.close)
        return callback

    def spool_rows(self) -> List[Dict[str, Any]]:
        return pc.Spool(self.spool_path).read()


class EpochNumberTest(unittest.TestCase):
    def test_fractional_epochs_map_to_the_epoch_they_fall_in(self) -> None:
        cases = {None: 1, 0.0: 1, 0.25: 1, 1.0: 1, 1.0000000001: 1, 1.5: 2, 2.0: 2, 2.0000000001: 2, 2.01: 3}
        for value, expected in cases.items():
            self.assertEqual(pc.epoch_number(value), expected, value)

    def test_fields_are_clipped_to_the_server_limit_in_utf16_units(self) -> None:
        text, clipped = pc.clip_field("😀" * 10, limit=7)
        self.assertTrue(clipped)
        self.assertEqual(text, "😀" * 3)
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
        cb = pc.PredictionsCallback([{"prompt": "a", "response": "r"}, {"prompt": "b", "output": "o"}], sample_count=2, environ={}, spool_path=self.spool_path, stream=io.StringIO())
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


    def test_an_evaluation_after_training_ended_is_spooled_not_lost(self) -> None:
        cb = self.callback(sample_frequency="eval")
        state = run_fake_training(cb, epochs=1, steps_per_epoch=2, eval_strategy="epoch")
        state.global_step += 1  # a manual trainer.evaluate() at a new step
        cb.on_evaluate(None, state, None)
        self.assertEqual(len(self.server.stored), 2)
        self.assertEqual(len(self.spool_rows()), 2)
        self.assertEqual(cb.counters.snapshot()["spooled"], 2)


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
        run_fake_training(cb, epochs=2, steps_per_epoch=2)
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


class DefaultGenerationTest(Base):
    """model.generate with a stand-in torch: eval mode, no_grad, only new tokens decoded."""

    def test_generates_in_eval_mode_and_restores_training_mode(self) -> None:
        events: List[str] = []

        @contextlib.contextmanager
        def no_grad():
            events.append("no_grad on")
            yield
            events.append("no_grad off")

        fake_torch = types.ModuleType("torch")
        fake_torch.no_grad = no_grad  # type: ignore[attr-defined]

        class Ids(list):
            @property
            def shape(self):
                return (1, len(self[0]))

        class Encoded(dict):
            def to(self, device):
                events.append(f"to {device}")
                return self

        class Tokenizer:
            pad_token_id = None
            eos_token_id = 0

            def __call__(self, text, return_tensors):
                return Encoded(input_ids=Ids([[ord(c) for c in text]]))

            def decode(self, ids, skip_special_tokens):
                return "".join(chr(i) for i in ids)

        class Model:
            device = "cpu"
            training = True

            def eval(self):
                self.training = False

            def train(self):
                self.training = True

            def generate(self, input_ids, max_new_tokens, pad_token_id):
                events.append(f"generate training={self.training} max={max_new_tokens} pad={pad_token_id}")
                return [input_ids[0] + [ord(c) for c in "!new"]]

        model = Model()
        sys.modules["torch"] = fake_torch
        self.addCleanup(sys.modules.pop, "torch", None)
        cb = self.callback(sample_frequency="epoch", generate_fn=None, tokenizer=Tokenizer(), max_new_tokens=7)
        state = types.SimpleNamespace(epoch=1.0, global_step=3, max_steps=3, is_world_process_zero=True)
        cb.on_epoch_end(None, state, None, model=model)
        cb.close()
        self.assertTrue(model.training)
        self.assertIn("generate training=False max=7 pad=0", events)
        self.assertEqual(events[0], "no_grad on")
        self.assertEqual({r["prediction"] for r in self.server.stored.values()}, {"!new"})


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
            self.assertEqual(len(pc.Spool(spool).read()), 4)


if __name__ == "__main__":
    unittest.main()
