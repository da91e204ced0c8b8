"""Training predictions for Hugging Face ``Trainer`` users: a stdlib-only callback.

Samples a fixed set of prompts, generates completions on the configured trigger (after each
evaluation, at each epoch end, or every ``step_interval`` optimizer steps) and ships them to the
predictions server with the job token, speaking the same tRPC-over-HTTP wire format as the
TypeScript trainer (``pod.writePredictions``, ``pod.heartbeat``, ``pod.log``, ``pod.finish``).

Every prediction is accounted for: it is persisted, spooled to a JSONL file (server unreachable,
or local mode because an env var is missing) or counted as rejected with the server's reason.
Nothing here imports ``transformers`` or ``torch`` at module load; the default generation
imports ``torch`` lazily, and ``generate_fn`` replaces it for custom models and tests.

Usage (three lines)::

    from predictions_callback import PredictionsCallback
    cb = PredictionsCallback(samples=eval_rows, tokenizer=tokenizer, sample_frequency="eval")
    trainer.add_callback(cb)

Upload a spool later: ``python3 predictions_callback.py sync --spool FILE`` (env JOB_TOKEN, API_URL).
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import hashlib
import json
import math
import os
import queue
import numbers
import random
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

# --- The wire contract (mirrors server/contract/pod.schemas.ts) -------------------------------

ENV_VARS = ("JOB_ID", "JOB_TOKEN", "API_URL")
TRIGGERS = ("eval", "epoch", "steps")
FIELD_LIMIT = 16_000  # prompt / groundTruth / prediction, in UTF-16 code units like the server
BATCH_MAX_ROWS = 1_000
# The server accepts 8 MiB after inflating by default; staying well below it means a 413 is rare,
# and when it does happen the batch is split in halves rather than rejected.
BATCH_MAX_BYTES = 2 * 1024 * 1024
LOG_LINE_MAX = 4_000
LOG_BATCH_MAX = 500
LOG_BUFFER_MAX = 2_000  # log lines kept while the server is unreachable; older ones are dropped
COMPLETION_KEYS = ("completion", "response", "output")
# JSON has no NaN: a non-finite metric value travels as its name (NON_FINITE_VALUES in the contract).
NON_FINITE_VALUES = ("NaN", "Infinity", "-Infinity")
METRICS_BUFFER_MAX = 50_000  # metric points kept while the server is unreachable; older ones are dropped

Row = Dict[str, Any]


def epoch_number(state_epoch: Optional[float]) -> int:
    """The 1-based epoch a (fractional) ``state.epoch`` falls in.

    ``state.epoch`` is 1.5 halfway through the second epoch and 2.0 at its end; float noise can
    make the end 2.0000000001, which must still be epoch 2, hence the small tolerance.
    """
    if state_epoch is None:
        return 1
    return max(1, math.ceil(float(state_epoch) - 1e-9))


def _utf16_len(text: str) -> int:
    # surrogatepass: half an emoji counts as the one unit it is in JavaScript, instead of raising.
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clip_field(text: str, limit: int = FIELD_LIMIT) -> Tuple[str, bool]:
    """Clip ``text`` to ``limit`` UTF-16 units (the server's measure); True when clipped.

    A clipped prediction is still worth storing; a row over the limit would be rejected whole.
    """
    if len(text) <= limit // 2 or _utf16_len(text) <= limit:
        return text, False
    clipped = text[:limit]
    while _utf16_len(clipped) > limit:
        clipped = clipped[:-1]
    return clipped, True


def default_spool_path(job_id: Optional[str]) -> str:
    """One spool per job in the working directory, so an old spool never drains into a new job.

    Named by a digest of the job id rather than the id itself: printed paths carry no env values.
    """
    tag = hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:12] if job_id else "local"
    return os.path.join(os.getcwd(), f"predictions-spool-{tag}.jsonl")


def missing_env(environ: Mapping[str, str]) -> List[str]:
    return [name for name in ENV_VARS if not environ.get(name)]


_SURROGATE = re.compile("[\ud800-\udfff]")


def to_json(value: Any) -> str:
    """Strict JSON text for the wire and the spool, encodable as UTF-8 whatever the model wrote.

    ``allow_nan=False``: Python would otherwise write the token ``NaN``, which no JSON parser
    accepts (metric values are mapped to their names first, see ``metric_value``). A lone
    surrogate (half an emoji) cannot be encoded as UTF-8, so it is written as its ``\\udXXX``
    escape, as JavaScript's JSON.stringify does; the server stores it as U+FFFD, marked altered.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return _SURROGATE.sub(lambda match: "\\u%04x" % ord(match.group()), text)


def metric_value(value: float) -> Any:
    """A metric value as the wire carries it: the number, or the name of a non-finite one."""
    if math.isnan(value):
        return NON_FINITE_VALUES[0]
    if math.isinf(value):
        return NON_FINITE_VALUES[1] if value > 0 else NON_FINITE_VALUES[2]
    return value


def metric_rows(logs: Mapping[str, Any], *, step: int, epoch: float) -> List[Row]:
    """The numbers of a Trainer ``on_log`` dict as metric points (``epoch`` is the x-axis, not a metric)."""
    rows = []
    for name, value in logs.items():
        if name == "epoch" or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        number = value if isinstance(value, int) else float(value)
        rows.append({"step": step, "epoch": epoch, "name": str(name), "value": metric_value(number)})
    return rows


def altered_note(count: int) -> str:
    return (
        f"{count} prediction(s) had characters PostgreSQL cannot store (NUL, half an emoji) replaced by U+FFFD; "
        "they are stored and marked altered"
    )


# --- HTTP client -------------------------------------------------------------------------------


class PodRejected(Exception):
    """The server answered 4xx: retrying the same request cannot succeed."""

    def __init__(self, status: int, message: str, reason: Optional[str] = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        # The server's machine-readable cause (error.data.reason), e.g. "job_ended" once the job
        # was cancelled: the callback then stops training instead of running on for nobody.
        self.reason = reason


class PodUnreachable(Exception):
    """Network errors or 5xx answers persisted through every attempt."""


class PodClient:
    """Calls ``pod.*`` procedures with the job token: POST for mutations, GET for queries.

    Network errors and 5xx are retried with exponential backoff and full jitter (so many pods
    recovering at once do not hit the server in lockstep); 4xx is raised at once, carrying the
    server's ``error.message``, because the same request would be refused again.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        timeout: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base = api_url.rstrip("/")
        self._token = token
        self.attempts = max(1, attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self._sleep = sleep
        self._jitter = random.Random()

    def mutate(self, procedure: str, payload: Any, *, attempts: Optional[int] = None) -> Any:
        try:
            text = to_json(payload)
        except ValueError as error:
            # A NaN somewhere the contract has no name for it: no server could take this request,
            # so it is refused here, once, like a 400, instead of being retried for ever.
            raise PodRejected(400, f"not sent, not valid JSON: {error}") from None
        body = gzip.compress(text.encode("utf-8"))
        request = lambda: urllib.request.Request(  # noqa: E731 - a fresh Request per attempt
            f"{self.base}/trpc/{procedure}",
            data=body,
            method="POST",
            headers={**self._headers(), "Content-Encoding": "gzip"},
        )
        return self._call(request, attempts)

    def query(self, procedure: str, payload: Any = None, *, attempts: Optional[int] = None) -> Any:
        suffix = "" if payload is None else "?input=" + urllib.parse.quote(to_json(payload))
        request = lambda: urllib.request.Request(  # noqa: E731
            f"{self.base}/trpc/{procedure}{suffix}", method="GET", headers=self._headers()
        )
        return self._call(request, attempts)

    def _headers(self) -> Dict[str, str]:
        return {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def _call(self, make_request: Callable[[], urllib.request.Request], attempts: Optional[int]) -> Any:
        total = self.attempts if attempts is None else max(1, attempts)
        last_error = "no attempt made"
        for attempt in range(total):
            if attempt > 0:
                delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
                self._sleep(self._jitter.uniform(delay / 2, delay))
            try:
                with urllib.request.urlopen(make_request(), timeout=self.timeout) as response:
                    envelope = json.loads(response.read().decode("utf-8"))
                return envelope.get("result", {}).get("data")
            except urllib.error.HTTPError as error:
                message, reason = _error_details(error)
                if 400 <= error.code < 500:
                    raise PodRejected(error.code, message, reason) from None
                last_error = f"HTTP {error.code}: {message}"
            except (urllib.error.URLError, OSError, ValueError) as error:
                # URLError: refused / DNS; OSError: reset, timeout; ValueError: a truncated body.
                last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        raise PodUnreachable(f"{total} attempt(s) failed, last: {last_error}")


def _error_details(error: urllib.error.HTTPError) -> Tuple[str, Optional[str]]:
    """The server's message and machine-readable reason (None when it gave none)."""
    try:
        body = error.read().decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; the status alone decides what happens next
        return error.reason or "no message", None
    try:
        envelope = json.loads(body)["error"]
        reason = (envelope.get("data") or {}).get("reason")
        return str(envelope["message"]), str(reason) if reason else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:300] or str(error.reason), None


# --- Uploading rows (shared by the background writer and `sync`) -------------------------------


class UploadResult:
    def __init__(self) -> None:
        self.inserted = 0
        self.duplicates = 0
        self.replaced = 0
        self.altered = 0
        self.rejected: List[Tuple[Row, str]] = []
        self.unsent: List[Row] = []
        self.unreachable: Optional[str] = None

    @property
    def persisted(self) -> int:
        # A duplicate is a row the server already holds (an earlier attempt or an earlier sync); a
        # replaced row had the key of a stored row with other content (a resumed run): ours is stored.
        return self.inserted + self.duplicates + self.replaced


def batches(rows: Sequence[Row], max_rows: int = BATCH_MAX_ROWS, max_bytes: int = BATCH_MAX_BYTES) -> Iterable[List[Row]]:
    """Split rows into batches within the server's row cap and a body-size budget."""
    batch: List[Row] = []
    size = 0
    for row in rows:
        row_size = len(to_json(row).encode("utf-8")) + 1
        if batch and (len(batch) >= max_rows or size + row_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def upload_rows(client: PodClient, rows: Sequence[Row], *, attempts: Optional[int] = None, batch_size: int = BATCH_MAX_ROWS) -> UploadResult:
    """Send rows in batches; stop at the first unreachable batch and return the rest as unsent."""
    result = UploadResult()
    pending = list(batches(rows, max_rows=min(batch_size, BATCH_MAX_ROWS)))
    while pending:
        batch = pending.pop(0)
        try:
            output = client.mutate("pod.writePredictions", {"predictions": batch}, attempts=attempts) or {}
        except PodUnreachable as error:
            result.unreachable = str(error)
            result.unsent = batch + [row for rest in pending for row in rest]
            return result
        except PodRejected as error:
            if error.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            result.rejected.extend((row, error.message) for row in batch)
            continue
        refused = {int(item["index"]): str(item.get("reason", "")) for item in output.get("rejected", [])}
        result.rejected.extend((batch[i], reason) for i, reason in sorted(refused.items()) if 0 <= i < len(batch))
        result.inserted += int(output.get("inserted", 0))
        result.duplicates += int(output.get("duplicates", 0))
        result.replaced += int(output.get("replaced", 0))
        result.altered += int(output.get("altered", 0))
    return result


# --- Spool -------------------------------------------------------------------------------------


class Spool:
    """A JSONL file of wire rows waiting for upload; the same format ``sync`` reads."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def append(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(to_json(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())  # the point of a spool is surviving a killed pod

    def read(self) -> List[Row]:
        if not os.path.exists(self.path):
            return []
        rows = []
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    # A line torn by a kill mid-write: skip it rather than block every later row.
                    continue
        return rows

    def replace(self, rows: Sequence[Row]) -> None:
        """Keep only ``rows``: written to a temporary file and renamed, so a crash keeps one copy."""
        if not rows:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        temporary = self.path + ".tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(to_json(row) + "\n")
        os.replace(temporary, self.path)

    def count(self) -> int:
        return len(self.read())


# --- Background writer -------------------------------------------------------------------------


class Counters:
    """generated = persisted + spooled (still waiting) + rejected + rows in flight.

    ``duplicates`` and ``replaced`` are parts of ``persisted``; ``altered`` counts stored rows in
    which the server replaced characters PostgreSQL cannot store by U+FFFD; ``metrics_refused``
    counts metric points the server refused (logged with the reason, not resent).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generated = 0
        self.persisted = 0
        self.spooled = 0
        self.rejected = 0
        self.duplicates = 0
        self.replaced = 0
        self.altered = 0
        self.metrics_refused = 0
        self.trigger_fires = 0

    def snapshot(self) -> Dict[str, int]:
        with self.lock:
            return {"generated": self.generated, "persisted": self.persisted, "spooled": self.spooled, "rejected": self.rejected}


class PredictionWriter:
    """Ships rows, log lines and heartbeats from a background thread.

    Training only enqueues; the network, retries and spooling happen here. After a batch cannot
    be delivered the writer goes offline: new rows go straight to the spool (no long retry loop
    per batch) and every ``probe_interval`` seconds a heartbeat or a one-attempt drain checks
    whether the server is back, after which the spool is drained.
    """

    def __init__(
        self,
        client: Optional[PodClient],
        spool: Spool,
        counters: Counters,
        *,
        local_mode: bool,
        status: Callable[[], Dict[str, Any]],
        emit: Callable[[str, str], None],
        heartbeat_interval: float = 5.0,
        probe_interval: float = 10.0,
    ):
        self.client = client
        self.spool = spool
        self.counters = counters
        self.local_mode = local_mode
        self._status = status
        self._emit = emit
        self.heartbeat_interval = heartbeat_interval
        self.probe_interval = probe_interval
        self._queue: "queue.Queue[Tuple[str, Any]]" = queue.Queue()
        self._logs: List[Dict[str, str]] = []
        self._logs_lock = threading.Lock()
        self._metrics: List[Row] = []
        self._metrics_dropped = 0
        self._metrics_lock = threading.Lock()
        self._online = True
        self._next_probe = 0.0
        self._next_heartbeat = 0.0
        self._rejection_reported = False
        self._heartbeats = 0
        self._held: Optional[Tuple[str, Any]] = None  # a flush/stop marker met while coalescing
        self._thread = threading.Thread(target=self._run, name="predictions-writer", daemon=True)
        self._closed = False
        self.cancelled = False
        with counters.lock:
            counters.spooled = spool.count()

    # Called from the training thread -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, rows: List[Row]) -> None:
        if rows:
            self._queue.put(("rows", rows))

    def log(self, level: str, message: str) -> None:
        """Queue a line for ``pod.log`` (printing is the caller's business)."""
        if self.client is None:
            return
        with self._logs_lock:
            self._logs.append({"level": level, "message": message[:LOG_LINE_MAX]})
            del self._logs[:-LOG_BUFFER_MAX]

    def metrics(self, rows: List[Row]) -> None:
        """Queue metric points for ``pod.writeMetrics``; the oldest give way when the buffer is full."""
        if self.client is None or not rows:
            return
        with self._metrics_lock:
            self._metrics.extend(rows)
            overflow = len(self._metrics) - METRICS_BUFFER_MAX
            if overflow > 0:
                del self._metrics[:overflow]
                self._metrics_dropped += overflow

    def flush(self, timeout: float = 60.0) -> bool:
        """Deliver (or spool) everything submitted so far and try the spool once; True when done."""
        return self._request("flush", timeout)

    def close(self, timeout: float = 60.0) -> bool:
        """Flush, send a last heartbeat and stop the thread. Safe to call more than once."""
        if self._closed:
            return True
        self._closed = True
        return self._request("stop", timeout)

    def _request(self, kind: str, timeout: float) -> bool:
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put((kind, done))
        return done.wait(timeout)

    # The writer thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            wait = max(0.05, self._next_heartbeat - time.monotonic())
            try:
                if self._held is not None:
                    (kind, item), self._held = self._held, None
                else:
                    kind, item = self._queue.get(timeout=wait)
            except queue.Empty:
                kind, item = "tick", None
            try:
                if kind == "rows":
                    self._deliver(self._coalesce(item))
                elif kind in ("flush", "stop"):
                    self._drain_spool(force=True)
                    self._send_metrics()
                    if kind == "stop":
                        self._heartbeat("finishing")
                    self._send_logs()
                    item.set()
                    if kind == "stop":
                        return
                self._periodic()
            except Exception as error:  # the writer must outlive any single bad request
                self._emit("error", f"predictions writer: unexpected {type(error).__name__}: {error}")

    def _coalesce(self, rows: List[Row]) -> List[Row]:
        """Merge rows already queued behind this batch, so a burst costs one request."""
        merged = list(rows)
        while len(merged) < BATCH_MAX_ROWS:
            try:
                kind, item = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind != "rows":
                self._held = (kind, item)  # handled next, after this batch, keeping the order
                break
            merged.extend(item)
        return merged

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval
            self._heartbeat("running" if self._heartbeats else "starting")
            self._drain_spool(force=False)
        self._send_metrics()
        self._send_logs()

    def _deliver(self, rows: List[Row]) -> None:
        if self.local_mode or self.client is None:
            self._to_spool(rows)
            return
        if not self._online and time.monotonic() < self._next_probe:
            self._to_spool(rows)
            return
        # Offline and due a probe: one attempt only, so a dead server costs one timeout.
        result = upload_rows(self.client, rows, attempts=None if self._online else 1)
        self._account(result, from_spool=False)
        if result.unsent:
            self._to_spool(result.unsent)
        elif not self._online:
            self._set_online(True)
            self._drain_spool(force=True)

    def _to_spool(self, rows: List[Row]) -> None:
        self.spool.append(rows)
        with self.counters.lock:
            self.counters.spooled += len(rows)

    def _drain_spool(self, *, force: bool) -> None:
        if self.local_mode or self.client is None:
            return
        if not self._online and not force and time.monotonic() < self._next_probe:
            return
        rows = self.spool.read()
        if not rows:
            return
        result = upload_rows(self.client, rows, attempts=None if self._online else 1)
        self.spool.replace(result.unsent)
        self._account(result, from_spool=True, spooled_before=len(rows))
        if not result.unsent:
            self._set_online(True)
            self._emit("info", f"uploaded {result.persisted} spooled prediction(s); the spool is empty")

    def _account(self, result: UploadResult, *, from_spool: bool, spooled_before: int = 0) -> None:
        with self.counters.lock:
            self.counters.persisted += result.persisted
            self.counters.duplicates += result.duplicates
            self.counters.replaced += result.replaced
            first_altered = self.counters.altered == 0
            self.counters.altered += result.altered
            self.counters.rejected += len(result.rejected)
            if from_spool:
                self.counters.spooled = len(result.unsent) + max(0, self.counters.spooled - spooled_before)
        if result.altered and first_altered:
            # Said loudly once; the summary gives the total over the run.
            self._emit("warn", altered_note(result.altered) + " (the summary gives the total)")
        if result.replaced:
            self._emit(
                "info",
                f"{result.replaced} prediction(s) replaced rows the server held at the same (step, sampleIndex) "
                "with other content (a run resumed from a checkpoint?)",
            )
        for row, reason in result.rejected[:5]:
            self._emit("error", f"server rejected prediction step={row.get('step')} sampleIndex={row.get('sampleIndex')}: {reason}")
        if len(result.rejected) > 5:
            self._emit("error", f"... and {len(result.rejected) - 5} more rejected prediction(s)")
        if result.unreachable:
            if self._online:
                self._emit("warn", f"server unreachable ({result.unreachable}); spooling predictions to {self.spool.path} and retrying every {self.probe_interval:g}s")
            self._set_online(False)

    def _set_online(self, online: bool) -> None:
        self._online = online
        if not online:
            self._next_probe = time.monotonic() + self.probe_interval

    def _heartbeat(self, status: str) -> None:
        if self.client is None:
            return
        payload = {**self._status(), "status": status, "counters": self.counters.snapshot()}
        with self.counters.lock:
            payload["triggerFires"] = self.counters.trigger_fires
        try:
            self._heartbeats += 1
            answer = self.client.mutate("pod.heartbeat", payload, attempts=1) or {}
        except PodUnreachable:
            self._set_online(False)
            return
        except PodRejected as error:
            if error.reason == "job_ended" and not self.cancelled:
                self.cancelled = True
                self._emit("warn", f"the job has ended on the server ({error.message}); training stops at the next step")
            if not self._rejection_reported:
                self._rejection_reported = True
                self._emit("error", f"heartbeat refused by the server: {error.message}")
            return
        if answer.get("cancelled"):
            self.cancelled = True
        if not self._online:
            # The server answers again: try the spool at once instead of waiting for a probe.
            self._set_online(True)
            self._drain_spool(force=True)

    def _send_metrics(self) -> None:
        """Ship buffered metric points; a point the server refuses is reported once and let go."""
        if self.client is None or not self._online:
            return
        with self._metrics_lock:
            dropped, self._metrics_dropped = self._metrics_dropped, 0
        if dropped:
            self._emit("warn", f"{dropped} metric point(s) were dropped while the server could not take them")
        while True:
            with self._metrics_lock:
                points = self._metrics[:BATCH_MAX_ROWS]
            if not points:
                return
            refused: List[Tuple[Row, str]] = []
            try:
                answer = self.client.mutate("pod.writeMetrics", {"metrics": points}, attempts=1) or {}
                for item in answer.get("rejected", []):
                    index = int(item.get("index", -1))
                    refused.append((points[index] if 0 <= index < len(points) else {}, str(item.get("reason", ""))))
            except PodUnreachable:
                return  # kept for the next round
            except PodRejected as error:
                refused = [(point, error.message) for point in points]
            with self._metrics_lock:
                del self._metrics[: len(points)]
            if refused:
                with self.counters.lock:
                    self.counters.metrics_refused += len(refused)
                # JSON-quoted, as the TypeScript pod writes it: the name may hold the control character that got it refused.
                reasons = "; ".join(f"{json.dumps(point.get('name'))} at step {point.get('step')}: {reason}" for point, reason in refused[:5])
                more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
                self._emit("error", f"server refused {len(refused)} of {len(points)} metric point(s), not resent: {reasons}{more}")

    def _send_logs(self) -> None:
        if self.client is None or not self._online:
            return
        while True:
            with self._logs_lock:
                lines = self._logs[:LOG_BATCH_MAX]
            if not lines:
                return
            try:
                self.client.mutate("pod.log", {"lines": lines}, attempts=1)
            except PodUnreachable:
                return  # kept for the next round
            except PodRejected:
                pass  # a refused log batch is not worth a second try; the lines are on stderr
            with self._logs_lock:
                del self._logs[: len(lines)]


# --- The callback ------------------------------------------------------------------------------


def _completion_of(sample: Mapping[str, Any]) -> str:
    for key in COMPLETION_KEYS:
        if key in sample and sample[key] is not None:
            return str(sample[key])
    raise ValueError(f"a sample needs one of the keys {', '.join(COMPLETION_KEYS)} beside 'prompt'")


def _strategy_name(value: Any) -> str:
    # IntervalStrategy is a str enum in recent versions and a plain Enum in older ones.
    return str(getattr(value, "value", value)).lower()


class PredictionsCallback:
    """A ``transformers.TrainerCallback``-compatible callback that samples predictions.

    Duck-typed on purpose (no ``transformers`` import): ``Trainer`` calls every ``on_*`` event on
    every callback, and the ones this class does not use are answered by ``__getattr__``.

    Args:
        samples: rows with ``prompt`` and ``completion`` (or ``response`` / ``output``).
        tokenizer: used by the default generation (falls back to the ``processing_class`` or
            ``tokenizer`` that Trainer passes to callbacks).
        sample_frequency: ``"eval"`` (after each evaluation), ``"epoch"`` or ``"steps"``.
        step_interval: optimizer steps between samples; required for ``"steps"``.
        sample_count: how many samples, chosen once with ``seed``.
        generate_fn: ``(prompts) -> completions``, replacing ``model.generate``.
        spool_path: where undeliverable predictions are kept (JSONL).
        environ: the environment to read ``JOB_ID`` / ``JOB_TOKEN`` / ``API_URL`` from.
        finish_job: report ``pod.finish`` when training ends with every prediction stored.
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]],
        *,
        tokenizer: Any = None,
        sample_frequency: str = "eval",
        step_interval: Optional[int] = None,
        sample_count: int = 5,
        max_new_tokens: int = 64,
        seed: int = 42,
        generate_fn: Optional[Callable[[List[str]], List[str]]] = None,
        spool_path: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        heartbeat_interval: float = 5.0,
        probe_interval: float = 10.0,
        retry_attempts: int = 5,
        backoff_base: float = 0.5,
        http_timeout: float = 15.0,
        finish_job: bool = True,
        install_handlers: bool = True,
        stream: Any = None,
    ):
        if sample_frequency not in TRIGGERS:
            raise ValueError(f"sample_frequency must be one of {', '.join(TRIGGERS)}, got {sample_frequency!r}")
        if sample_frequency == "steps" and (not isinstance(step_interval, int) or step_interval < 1):
            raise ValueError('sample_frequency="steps" needs step_interval, a whole number of optimizer steps >= 1 (e.g. step_interval=50)')
        if sample_count < 1:
            raise ValueError("sample_count must be at least 1")
        if len(samples) == 0:
            raise ValueError("samples is empty: pass the rows to predict on (dicts with prompt and completion)")

        self.sample_frequency = sample_frequency
        self.step_interval = step_interval
        self.max_new_tokens = max_new_tokens
        self.tokenizer = tokenizer
        self.generate_fn = generate_fn
        self.finish_job = finish_job
        self._install_handlers = install_handlers
        self._stream = stream

        # Chosen once, so every fire predicts the same rows and epochs line up for comparison.
        chosen = random.Random(seed).sample(range(len(samples)), k=min(sample_count, len(samples)))
        self.samples = [{"prompt": str(samples[i]["prompt"]), "groundTruth": _completion_of(samples[i])} for i in chosen]

        env = dict(os.environ if environ is None else environ)
        self.missing = missing_env(env)
        self.local_mode = bool(self.missing)
        self.env_presence = {name: name not in self.missing for name in ENV_VARS}
        self.spool = Spool(spool_path or default_spool_path(env.get("JOB_ID")))
        # Even in local mode a heartbeat can still tell the server which variable is missing,
        # when the two it needs to reach the job are there.
        client = None
        if env.get("API_URL") and env.get("JOB_TOKEN"):
            client = PodClient(env["API_URL"], env["JOB_TOKEN"], attempts=retry_attempts, backoff_base=backoff_base, timeout=http_timeout)
        self.counters = Counters()
        self.writer = PredictionWriter(
            client,
            self.spool,
            self.counters,
            local_mode=self.local_mode,
            status=self._status,
            emit=self._log,
            heartbeat_interval=heartbeat_interval,
            probe_interval=probe_interval,
        )
        self._client = client
        self._epoch = 0.0
        self._step = 0
        self._total_steps = 0
        self._fired_steps: set = set()
        self._started = False
        self._ended = False
        self._previous_sigterm: Any = None
        self._warned_clipped = False

        if self.local_mode and self._is_main_rank():
            self._log(
                "warn",
                f"LOCAL MODE: missing environment variable(s) {', '.join(self.missing)}; "
                f"predictions will be written to {self.spool.path} and NOT sent to the server. "
                f"Upload them later with: python3 predictions_callback.py sync --spool {self.spool.path}",
            )

    # Trainer events -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Trainer calls every event on every callback; unused ones (and events added by future
        # versions) are no-ops. Returning None leaves Trainer's control object untouched.
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._is_world_zero(state):
            return
        self._track(state)
        self._start()
        if self.sample_frequency == "eval" and args is not None:
            strategy = _strategy_name(getattr(args, "eval_strategy", getattr(args, "evaluation_strategy", "no")))
            if strategy == "no":
                self._log(
                    "error",
                    'sample_frequency="eval" but eval_strategy is "no": on_evaluate never fires and no predictions '
                    'will be sampled. Set eval_strategy="epoch" or "steps" (with an eval_dataset), or use sample_frequency="epoch".',
                )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._is_world_zero(state):
            return
        self._track(state)
        if self.writer.cancelled and control is not None:
            control.should_training_stop = True
        step = int(getattr(state, "global_step", 0) or 0)
        if self.sample_frequency == "steps" and step > 0 and step % self.step_interval == 0:
            self._fire("steps", state, kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        # Trainer logs train and eval numbers here (loss, eval_loss, eval_precision@5...); a NaN
        # loss is sent as "NaN" rather than dropped: a diverging run is worth seeing.
        if not logs or self._ended or not self._is_world_zero(state):
            return
        self._track(state)
        self._start()
        step = int(getattr(state, "global_step", 0) or 0)
        self.writer.metrics(metric_rows(logs, step=step, epoch=float(getattr(state, "epoch", None) or 0.0)))

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sample_frequency == "eval" and self._is_world_zero(state):
            self._track(state)
            self._fire("eval", state, kwargs)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sample_frequency == "epoch" and self._is_world_zero(state):
            self._track(state)
            self._fire("epoch", state, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._is_world_zero(state):
            return
        self._track(state)
        self.close(completed=True)

    # Firing -------------------------------------------------------------------------------------

    def _fire(self, trigger: str, state: Any, kwargs: Mapping[str, Any]) -> None:
        step = int(getattr(state, "global_step", 0) or 0)
        # A dict of eval datasets calls on_evaluate once per dataset at the same step; the rows
        # are keyed by (step, sampleIndex), so one batch per step is all there can be.
        if step in self._fired_steps:
            return
        self._fired_steps.add(step)
        self._start()
        with self.counters.lock:
            self.counters.trigger_fires += 1
        epoch = epoch_number(getattr(state, "epoch", None))
        prompts = [sample["prompt"] for sample in self.samples]
        try:
            completions = self._generate(prompts, kwargs)
        except Exception as error:
            self._log("error", f"generation failed at step {step} ({trigger}): {type(error).__name__}: {error}")
            return
        rows = []
        for index, (sample, completion) in enumerate(zip(self.samples, completions)):
            row = {"epoch": epoch, "step": step, "sampleIndex": index, "trigger": trigger}
            for key, value in (("prompt", sample["prompt"]), ("groundTruth", sample["groundTruth"]), ("prediction", str(completion))):
                row[key], clipped = clip_field(value)
                if clipped and not self._warned_clipped:
                    self._warned_clipped = True
                    self._log("warn", f"a {key} longer than {FIELD_LIMIT} characters was clipped to fit the server's limit")
            rows.append(row)
        with self.counters.lock:
            self.counters.generated += len(rows)
        if self._ended:
            # e.g. trainer.evaluate() after train(): the writer has stopped, so keep the rows on disk.
            self.spool.append(rows)
            with self.counters.lock:
                self.counters.spooled += len(rows)
            self._print("warn", f"{len(rows)} prediction(s) made after training ended were written to {self.spool.path}; upload them with sync")
            return
        self.writer.submit(rows)

    def _generate(self, prompts: List[str], kwargs: Mapping[str, Any]) -> List[str]:
        if self.generate_fn is not None:
            completions = list(self.generate_fn(prompts))
        else:
            completions = self._generate_with_model(prompts, kwargs)
        if len(completions) != len(prompts):
            raise ValueError(f"generation returned {len(completions)} completion(s) for {len(prompts)} prompt(s)")
        return completions

    def _generate_with_model(self, prompts: List[str], kwargs: Mapping[str, Any]) -> List[str]:
        """Real sampling with ``model.generate``; only the newly generated tokens are decoded."""
        import torch  # lazy: the module must import without torch installed

        model = kwargs.get("model")
        tokenizer = self.tokenizer or kwargs.get("processing_class") or kwargs.get("tokenizer")
        if model is None or tokenizer is None:
            raise ValueError("no model/tokenizer to generate with: pass tokenizer=... or generate_fn=...")
        was_training = model.training
        model.eval()
        completions = []
        try:
            with torch.no_grad():
                # One prompt at a time: no padding side to get wrong, and a handful of samples.
                for prompt in prompts:
                    inputs = tokenizer(prompt, return_tensors="pt").to(model.device)
                    pad_id = getattr(tokenizer, "pad_token_id", None)
                    if pad_id is None:
                        pad_id = getattr(tokenizer, "eos_token_id", None)
                    output = model.generate(**inputs, max_new_tokens=self.max_new_tokens, pad_token_id=pad_id)
                    new_tokens = output[0][inputs["input_ids"].shape[-1]:]
                    completions.append(tokenizer.decode(new_tokens, skip_special_tokens=True))
        finally:
            if was_training:
                model.train()
        return completions

    # Lifecycle ----------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the writer on first use in the main process (other ranks never start one)."""
        if self._started:
            return
        self._started = True
        self.writer.start()
        atexit.register(self._at_exit)
        if self._install_handlers:
            self._install_sigterm()
        if not self.local_mode:
            self._log("info", f"predictions: cloud mode, trigger {self.sample_frequency}, {len(self.samples)} sample(s) per fire")

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until every prediction so far is persisted or spooled."""
        return self.writer.flush(timeout) if self._started else True

    def close(self, *, completed: bool = False, timeout: float = 120.0) -> Dict[str, int]:
        """Flush, stop the writer, report ``pod.finish`` when appropriate, print the summary."""
        if self._ended:
            return self.counters.snapshot()
        self._ended = True
        if self._started:
            self.writer.close(timeout)
        counters = self.counters.snapshot()
        if completed and self.finish_job and self._started and not self.local_mode and self._client is not None:
            if counters["spooled"] == 0:
                try:
                    self._client.mutate("pod.finish", {"status": "completed"})
                except (PodRejected, PodUnreachable) as error:
                    self._print("warn", f"could not report the job finished: {error}")
            else:
                # Finishing revokes the token, which `sync` still needs for the spooled rows.
                self._print("warn", "not reporting the job finished: spooled predictions still need the job token to upload")
        self._print("info", self.summary())
        return counters

    def summary(self) -> str:
        c = self.counters.snapshot()
        with self.counters.lock:
            fires = self.counters.trigger_fires
            replaced, altered, metrics_refused = self.counters.replaced, self.counters.altered, self.counters.metrics_refused
        line = (
            f"predictions summary: mode={'local' if self.local_mode else 'cloud'} trigger={self.sample_frequency} "
            f"fires={fires} generated={c['generated']} persisted={c['persisted']} spooled={c['spooled']} rejected={c['rejected']} "
            f"replaced={replaced} altered={altered} metrics_refused={metrics_refused}"
        )
        if altered:
            line += f"; {altered_note(altered)}"
        if metrics_refused:
            line += f"; {metrics_refused} metric point(s) were refused by the server (reasons logged above)"
        if self.local_mode:
            line += f"; missing env: {', '.join(self.missing)}"
        if c["spooled"]:
            line += (
                f"; {c['spooled']} prediction(s) are in {self.spool.path}: upload them with "
                f"JOB_TOKEN=<the job token> API_URL=<server url> python3 predictions_callback.py sync --spool {self.spool.path}"
            )
        return line

    def _at_exit(self) -> None:
        # Interpreter exit without on_train_end (a crash, or a script that stops early): flush.
        self.close(completed=False, timeout=30.0)

    def _install_sigterm(self) -> None:
        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:
            pass  # not the main thread: atexit still flushes on a normal exit

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._print("warn", "SIGTERM: flushing predictions before exiting")
        self.close(completed=False, timeout=20.0)
        previous = self._previous_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:
            # The default action was to terminate: restore it and deliver the signal again.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    # Helpers ------------------------------------------------------------------------------------

    def _status(self) -> Dict[str, Any]:
        return {
            "mode": "local" if self.local_mode else "cloud",
            "env": dict(self.env_presence),
            "epoch": max(0.0, float(self._epoch)),
            "step": max(0, int(self._step)),
            "totalSteps": max(0, int(self._total_steps)),
        }

    def _track(self, state: Any) -> None:
        self._epoch = getattr(state, "epoch", None) or 0.0
        self._step = getattr(state, "global_step", 0) or 0
        self._total_steps = getattr(state, "max_steps", 0) or 0

    @staticmethod
    def _is_world_zero(state: Any) -> bool:
        return bool(getattr(state, "is_world_process_zero", True))

    @staticmethod
    def _is_main_rank() -> bool:
        # Before Trainer exists only the launcher's RANK tells the processes apart.
        return os.environ.get("RANK", "0") == "0"

    def _log(self, level: str, message: str) -> None:
        self._print(level, message)
        self.writer.log(level, message)

    def _print(self, level: str, message: str) -> None:
        stream = self._stream or sys.stderr
        print(f"[predictions] {level.upper()}: {message}", file=stream, flush=True)


# --- `sync`: upload a spool later --------------------------------------------------------------


def sync(spool_path: str, environ: Mapping[str, str], *, batch_size: int = 500, attempts: int = 5, out: Any = None) -> int:
    """Upload a spool file with the job token; returns a process exit code."""
    out = out or sys.stdout
    missing = [name for name in ("JOB_TOKEN", "API_URL") if not environ.get(name)]
    if missing:
        print(f"sync needs the environment variable(s) {', '.join(missing)} (names only; set them to the job's values)", file=out)
        return 2
    spool = Spool(spool_path)
    rows = spool.read()
    if not rows:
        print(f"nothing to upload: {spool.path} is missing or empty", file=out)
        return 0
    client = PodClient(environ["API_URL"], environ["JOB_TOKEN"], attempts=attempts)
    result = upload_rows(client, rows, batch_size=batch_size)
    # What the server holds (inserted, duplicate or replaced) leaves the spool; rejected rows are kept
    # aside with their reason so nothing disappears silently.
    spool.replace(result.unsent)
    if result.rejected:
        Spool(spool.path + ".rejected").append([{**row, "_reason": reason} for row, reason in result.rejected])
    print(
        f"sync: {len(rows)} row(s) read, inserted={result.inserted} duplicates={result.duplicates} replaced={result.replaced} "
        f"altered={result.altered} rejected={len(result.rejected)} unsent={len(result.unsent)}",
        file=out,
    )
    if result.altered:
        print(f"  {altered_note(result.altered)}", file=out)
    for row, reason in result.rejected[:5]:
        print(f"  rejected step={row.get('step')} sampleIndex={row.get('sampleIndex')}: {reason}", file=out)
    if result.rejected:
        print(f"  rejected rows were written to {spool.path}.rejected", file=out)
    if result.unsent:
        print(f"  server unreachable ({result.unreachable}); {len(result.unsent)} row(s) kept in {spool.path}, run sync again", file=out)
    return 0 if not result.rejected and not result.unsent else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="predictions_callback.py", description="Training predictions for Hugging Face Trainer.")
    commands = parser.add_subparsers(dest="command", required=True)
    sync_parser = commands.add_parser("sync", help="upload a spool file (env JOB_TOKEN and API_URL)")
    sync_parser.add_argument("--spool", required=True, help="the JSONL spool written by the callback")
    sync_parser.add_argument("--batch-size", type=int, default=500)
    options = parser.parse_args(argv)
    return sync(options.spool, os.environ, batch_size=options.batch_size)


if __name__ == "__main__":
    sys.exit(main())
