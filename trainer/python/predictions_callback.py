"""Training predictions for Hugging Face ``Trainer`` users: a stdlib-only callback.

Samples a fixed set of prompts, generates completions on the configured trigger (after each
evaluation, at each epoch end, or every ``step_interval`` optimizer steps) and ships them to the
predictions server with the job token, speaking the same tRPC-over-HTTP wire format as the
TypeScript trainer (``pod.writePredictions``, ``pod.writeMetrics``, ``pod.heartbeat``,
``pod.log``, ``pod.finish``).

Write-ahead: every prediction and metric point is appended to an fsync'd spool file before it is
sent, and marked done there once the server acknowledges it; the sender reads from the spool. A
pod killed at any instant loses nothing it had generated: the next run of the same job (same
spool) or ``sync`` uploads the rest, and the server stores each (job, step, sampleIndex) once.

Every prediction is accounted for: generated = persisted + rejected + spooled + pending, in every
heartbeat and in the summary. Nothing here imports ``transformers`` or ``torch`` at module load;
the default generation imports ``torch`` lazily, and ``generate_fn`` replaces it.

Usage (three lines)::

    from predictions_callback import PredictionsCallback
    cb = PredictionsCallback(samples=eval_rows, tokenizer=tokenizer, sample_frequency="eval")
    trainer.add_callback(cb)

Upload a spool later: ``python3 predictions_callback.py sync --spool FILE`` (env JOB_TOKEN, API_URL).
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import contextlib
import email.utils
import gzip
import hashlib
import http.client
import importlib.util
import inspect
import json
import math
import numbers
import os
import queue
import random
import re
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, TextIO, Tuple, cast

# --- The wire contract ---------------------------------------------------------------------------

# --- BEGIN GENERATED CONTRACT (npx tsx trainer/python/gen_contract.ts writes it from contract; do not edit by hand) ---
ENV_VARS = ("JOB_ID", "JOB_TOKEN", "API_URL")
TRIGGERS = ("eval", "epoch", "steps")
FIELD_LIMITS = {"prompt": 16000, "groundTruth": 16000, "prediction": 16000}
BATCH_MAX_ROWS = 1000
BATCH_MAX_BYTES = 2097152
METRIC_NAME_MAX = 128
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_LINE_MAX = 4000
LOG_BATCH_MAX = 500
HEARTBEAT_STATUSES = ("starting", "running", "finishing")
NON_FINITE_VALUES = ("NaN", "Infinity", "-Infinity")
ERROR_REASONS = ("token_expired", "token_revoked", "job_ended", "job_missing", "database_unavailable")
STEP_NOT_GLOBAL = "step_not_global"
# --- END GENERATED CONTRACT ---

FIELD_LIMIT = min(FIELD_LIMITS.values())  # prompt / groundTruth / prediction, in UTF-16 code units like the server
LOG_BUFFER_MAX = 2_000  # log lines kept while the server is unreachable; older ones are dropped
COMPLETION_KEYS = ("completion", "response", "output")
# Reasons of a 401 after which the rows can still be uploaded with a rotated token (an ended job's
# rotated token is an upload token), so they are kept in the spool and the user is told how.
TOKEN_REFUSALS = tuple(reason for reason in ERROR_REASONS if reason in ("token_revoked", "token_expired", "job_ended"))
RETRY_AFTER_MAX = 120.0  # seconds: a Retry-After beyond this is capped, so a typo cannot park a pod for a day
SYNC_COMMAND = "python3 predictions_callback.py sync --spool"

Row = Dict[str, Any]
Entry = Tuple[int, Row]  # (the record's seq in the spool, the wire row)
SPOOL_KINDS = ("prediction", "metric")  # the record kinds of a spool file, as trainer/pod/spool.ts names them


def epoch_number(state_epoch: Optional[float]) -> int:
    """The 1-based epoch a (fractional) ``state.epoch`` falls in.

    ``state.epoch`` is 1.5 halfway through the second epoch and 2.0 at its end; float noise can
    make the end 2.0000000001, which must still be epoch 2, hence the small tolerance.
    """
    if state_epoch is None:
        return 1
    return max(1, math.ceil(float(state_epoch) - 1e-9))


def clip_field(text: str, limit: int = FIELD_LIMIT) -> Tuple[str, bool]:
    """Clip ``text`` to ``limit`` characters (code points, the server's measure); True when clipped.

    The server counts code points (an emoji is one), as Python's ``len`` does; a lone surrogate
    counts as one in both. A clipped prediction is still worth storing; a row over the limit
    would be rejected whole.
    """
    if len(text) <= limit:
        return text, False
    return text[:limit], True


def default_spool_path(job_id: Optional[str]) -> str:
    """One spool per job in the working directory, so an old spool never drains into a new job.

    Named by a digest of the job id rather than the id itself: printed paths carry no env values.
    """
    tag = hashlib.sha256(job_id.encode("utf-8")).hexdigest()[:12] if job_id else "local"
    return os.path.join(os.getcwd(), f"predictions-spool-{tag}.jsonl")


# --- Environment ---------------------------------------------------------------------------------

# A job token is a JWT: three base64url parts. Anything else (a pasted page, a quoted value, a
# value with a space inside) could never authenticate, and may not even fit in an HTTP header.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


class PodEnv:
    """The pod variables, trimmed and checked; a value is described by its name, never echoed."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        # A token pasted from a file or a secret store often ends with a newline: trimmed, it works.
        values = {name: str(environ.get(name) or "").strip() for name in ENV_VARS}
        self.problems: List[str] = []
        token = values["JOB_TOKEN"]
        if token and not _JWT_SHAPE.fullmatch(token):
            self.problems.append(
                "JOB_TOKEN is set but is not a job token (expected three base64url parts separated by dots, "
                "as the job page shows it); copy it again. Treating JOB_TOKEN as missing"
            )
            token = ""
        api_url = values["API_URL"]
        if api_url:
            parts = urllib.parse.urlsplit(api_url) if _header_safe(api_url) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                # A URL is not a secret, but it may embed credentials: say what is wrong, not what it is.
                self.problems.append("API_URL is set but is not an http(s) URL (expected e.g. http://host:3000); treating it as missing")
                api_url = ""
            else:
                api_url = api_url.rstrip("/")
        job_id = values["JOB_ID"]
        if job_id and not _header_safe(job_id):
            self.problems.append("JOB_ID is set but holds spaces or control characters; treating it as missing")
            job_id = ""
        self.job_id = job_id or None
        self.token = token or None
        self.api_url = api_url or None
        usable = {"JOB_ID": self.job_id, "JOB_TOKEN": self.token, "API_URL": self.api_url}
        self.presence: Dict[str, bool] = {name: usable[name] is not None for name in ENV_VARS}
        self.missing: List[str] = [name for name in ENV_VARS if not self.presence[name]]
        # The token and URL are enough to reach the server: the token names the job.
        self.can_connect = self.token is not None and self.api_url is not None


def _header_safe(value: str) -> bool:
    """Printable ASCII without spaces: what a URL or a header value may carry as is."""
    return all(33 <= ord(c) <= 126 for c in value)


def missing_env(environ: Mapping[str, str]) -> List[str]:
    return PodEnv(environ).missing


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
        # int and float first: a type checker does not see int registered as a numbers.Real.
        if name == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float, numbers.Real)):
            continue
        number = value if isinstance(value, int) else float(value)
        rows.append({"step": step, "epoch": epoch, "name": str(name), "value": metric_value(number)})
    return rows


def altered_note(count: int) -> str:
    return (
        f"{count} prediction(s) had characters PostgreSQL cannot store (NUL, half an emoji) replaced by U+FFFD; "
        "they are stored and marked altered"
    )


def rotate_hint(reason: Optional[str], spool_path: str, count: int) -> str:
    """The one line that tells a user whose token was refused how to get the kept rows stored."""
    why = {
        "token_revoked": "the job token was revoked (a newer one was issued)",
        "token_expired": "the job token has expired",
        "job_ended": "the job has ended on the server",
    }.get(reason or "", "the server refused the job token")
    return (
        f"{why}; {count} prediction(s) are kept in {spool_path}. To store them, rotate the token on the job page "
        f"(or jobs.rotateToken), then run: JOB_TOKEN=<new token> API_URL=<server url> {SYNC_COMMAND} {spool_path}"
    )


# --- HTTP client ---------------------------------------------------------------------------------


class PodRejected(Exception):
    """The server answered a 4xx that retrying cannot change (408 and 429 are retried instead)."""

    def __init__(self, status: int, message: str, reason: Optional[str] = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        # The server's machine-readable cause (error.data.reason): "job_ended", "token_revoked"...
        self.reason = reason


class PodUnreachable(Exception):
    """Network errors, 5xx, 408 or 429 persisted through every attempt."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# 408 (the request took too long to arrive) and 429 (slow down) say "later", not "never".
RETRYABLE_4XX = (408, 429)


class PodClient:
    """Calls ``pod.*`` procedures with the job token: POST for mutations, GET for queries.

    Network errors, 5xx, 408 and 429 are retried with exponential backoff, each wait drawn between
    half and all of the backoff (so many pods recovering at once do not hit the server in
    lockstep) and never shorter than the server's ``Retry-After``; any other 4xx is raised at
    once, carrying the server's ``error.message``.
    Every attempt has a socket timeout, so a server that accepts connections and never answers
    costs at most ``timeout`` per attempt. Setting ``stop`` ends the waiting between attempts.
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
        sleep: Optional[Callable[[float], None]] = None,
        stop: Optional[threading.Event] = None,
    ) -> None:
        self.base = api_url.rstrip("/")
        self._token = token
        self.attempts = max(1, attempts)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.stop = stop or threading.Event()
        self._sleep = sleep or (lambda seconds: self.stop.wait(seconds) and None)
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

    def redact(self, text: str) -> str:
        """Defence in depth: no error text leaves this client carrying the token."""
        return text.replace(self._token, "<JOB_TOKEN>") if self._token else text

    def _call(self, make_request: Callable[[], urllib.request.Request], attempts: Optional[int]) -> Any:
        total = self.attempts if attempts is None else max(1, attempts)
        last_error = "no attempt made"
        retry_after: Optional[float] = None
        for attempt in range(total):
            if attempt > 0:
                if self.stop.is_set():
                    break  # closing: what is unsent stays in the spool
                delay = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
                self._sleep(max(self._jitter.uniform(delay / 2, delay), retry_after or 0.0))
            retry_after = None
            try:
                with urllib.request.urlopen(make_request(), timeout=self.timeout) as response:
                    envelope = json.loads(response.read().decode("utf-8"))
                return envelope.get("result", {}).get("data")
            except urllib.error.HTTPError as error:
                message, reason, after = _error_details(error)
                if 400 <= error.code < 500 and error.code not in RETRYABLE_4XX:
                    raise PodRejected(error.code, self.redact(message), reason) from None
                retry_after = after
                last_error = f"HTTP {error.code}: {message}"
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
                # URLError: refused / DNS; OSError: reset, timeout; HTTPException: a broken answer;
                # ValueError: a truncated body.
                last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
        raise PodUnreachable(self.redact(f"{total} attempt(s) failed, last: {last_error}"), retry_after)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds):
        return None
    return min(RETRY_AFTER_MAX, max(0.0, seconds))


def _error_details(error: urllib.error.HTTPError) -> Tuple[str, Optional[str], Optional[float]]:
    """The server's message, machine-readable reason and Retry-After (None when it gave none)."""
    retry_after = parse_retry_after(error.headers.get("Retry-After") if error.headers else None)
    try:
        body = error.read().decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; the status alone decides what happens next
        return str(error.reason or "no message"), None, retry_after
    try:
        envelope = json.loads(body)["error"]
        data = envelope.get("data") or {}
        reason = data.get("reason")
        if retry_after is None and isinstance(data.get("retryAfterSeconds"), (int, float)):
            retry_after = parse_retry_after(str(data["retryAfterSeconds"]))
        return str(envelope["message"]), str(reason) if reason else None, retry_after
    except (ValueError, KeyError, TypeError, AttributeError):
        return body[:300] or str(error.reason), None, retry_after


# --- Sending rows (shared by the background writer and `sync`) ------------------------------------


class SendResult:
    """What became of a list of spool entries sent to one procedure."""

    def __init__(self) -> None:
        self.stored: List[int] = []  # seqs the server holds now (inserted, duplicate or replaced)
        self.rejected: List[Tuple[int, Row, str]] = []
        self.unsent: List[Entry] = []
        self.inserted = 0
        self.duplicates = 0
        self.replaced = 0
        self.altered = 0
        self.unreachable: Optional[PodUnreachable] = None
        # A 401: nothing more can be sent with this token; the unsent rows stay in the spool.
        self.refused: Optional[PodRejected] = None

    @property
    def persisted(self) -> int:
        # A duplicate is a row the server already holds (an earlier attempt or an earlier sync); a
        # replaced row had the key of a stored row with other content (a resumed run): ours is stored.
        return len(self.stored)


def batches(entries: Sequence[Entry], max_rows: int = BATCH_MAX_ROWS, max_bytes: int = BATCH_MAX_BYTES) -> Iterable[List[Entry]]:
    """Split entries into batches within the server's row cap and a body-size budget."""
    batch: List[Entry] = []
    size = 0
    for entry in entries:
        row_size = len(to_json(entry[1]).encode("utf-8")) + 1
        if batch and (len(batch) >= max_rows or size + row_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += row_size
    if batch:
        yield batch


def send_entries(
    client: PodClient,
    entries: Sequence[Entry],
    *,
    procedure: str = "pod.writePredictions",
    key: str = "predictions",
    attempts: Optional[int] = None,
    batch_size: int = BATCH_MAX_ROWS,
) -> SendResult:
    """Send entries in batches; a 413 halves the batch (never drops it), the first unreachable
    batch or 401 stops the sending and returns the rest as unsent."""
    result = SendResult()
    pending = list(batches(entries, max_rows=max(1, min(batch_size, BATCH_MAX_ROWS))))
    while pending:
        batch = pending.pop(0)
        try:
            output = client.mutate(procedure, {key: [row for _, row in batch]}, attempts=attempts) or {}
        except PodUnreachable as error:
            result.unreachable = error
            result.unsent = batch + [entry for rest in pending for entry in rest]
            return result
        except PodRejected as error:
            if error.status == 401:
                result.refused = error
                result.unsent = batch + [entry for rest in pending for entry in rest]
                return result
            if error.status == 413 and len(batch) > 1:
                half = len(batch) // 2
                pending[:0] = [batch[:half], batch[half:]]
                continue
            # One row larger than the server takes, or a batch refused as a whole (400): kept
            # aside with the reason by the caller, never silently gone.
            result.rejected.extend((entry_id, row, error.message) for entry_id, row in batch)
            continue
        refused = {int(item["index"]): str(item.get("reason", "")) for item in output.get("rejected", []) if "index" in item}
        for index, (entry_id, row) in enumerate(batch):
            if index in refused:
                result.rejected.append((entry_id, row, refused[index]))
            else:
                result.stored.append(entry_id)
        result.inserted += int(output.get("inserted", 0))
        result.duplicates += int(output.get("duplicates", 0))
        result.replaced += int(output.get("replaced", 0))
        result.altered += int(output.get("altered", 0))
    return result


# --- Spool: the write-ahead log ------------------------------------------------------------------
#
# The TypeScript trainer's format (trainer/pod/spool.ts), so either client's `sync` uploads a spool
# written by the other: one file per job, one JSON record per line,
#   {"seq":12,"prediction":{...row as sent...}}   a prediction, numbered in the order generated
#   {"seq":13,"metric":{...point as sent...}}     a metric point
#   {"done":[[0,11],[13,13]]}                     seq ranges the server has answered for
#   {...a bare prediction row...}                 an older spool's line (before the seq records)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open a directory; the file itself was fsync'd
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass  # absent, or cannot be removed: a leftover is replayed later as duplicates, harmless


def to_ranges(seqs: Iterable[int]) -> List[List[int]]:
    """seq numbers as inclusive ``[from, to]`` ranges, for a short done record."""
    ranges: List[List[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_lines(path: str) -> List[bytes]:
    with open(path, "rb") as handle:
        return [line for line in handle.read().split(b"\n") if line.strip()]


def _json_object(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        # "replace" as the TypeScript reader does: a damaged byte costs a character, not the row.
        value = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class SpoolFile:
    """The write-ahead log of one job: predictions and metric points, appended and fsync'd before
    they are sent, marked done (a ``done`` record) once the server has answered for them.

    Unanswered records are the ones still to send, by this run, the next run of the same job, or
    either client's ``sync``. When nothing is left the file is removed; a long tail of done
    records is compacted away (rewrite aside, fsync, rename: a crash leaves one file or the other).

    A kill mid-append leaves a torn last line: it is cut off when the spool is opened (sending
    waits until a line is on disk, so a torn line was never sent), and the next append starts on
    a fresh line. A spool left by the previous version of this callback (``_id`` rows, a ``.done``
    file, a ``.metrics.jsonl`` file beside it) is read once and rewritten in this format.

    One process uses a spool at a time. When the disk refuses a write, records are kept in memory
    and still sent (the callback says so, loudly).
    """

    COMPACT_AFTER = 5_000  # records answered since the last rewrite before the file is rewritten

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.rejected_path = self.path + ".rejected"
        self._lock = threading.RLock()
        self._opened = False
        # Unanswered records by kind, in seq order (dicts keep insertion order).
        self._entries: Dict[str, Dict[int, Row]] = {kind: {} for kind in SPOOL_KINDS}
        self._next_seq = 0
        self._answered = 0  # done seqs written since the file was last rewritten
        self.bad_lines = 0
        self.torn_bytes = 0
        self.migrated = 0  # records read from the previous version's layout
        self.write_error: Optional[str] = None

    def open(self) -> None:
        """Load what earlier runs left (repairing a torn tail, migrating an old layout)."""
        with self._lock:
            if self._opened:
                return
            self._opened = True
            found: List[Tuple[int, str, Row]] = []
            done_ranges: List[Tuple[int, int]] = []
            legacy: List[Tuple[str, Row]] = []
            max_seq = -1
            untidy = False
            if os.path.exists(self.path):
                untidy = self._cut_torn_tail()
                for raw in _read_lines(self.path):
                    record = _json_object(raw)
                    if record is None:
                        self.bad_lines += 1
                        untidy = True
                    elif isinstance(record.get("done"), list):
                        untidy = True
                        for pair in record["done"]:
                            if isinstance(pair, list) and len(pair) == 2 and _is_seq(pair[0]) and _is_seq(pair[1]):
                                done_ranges.append((pair[0], pair[1]))
                                max_seq = max(max_seq, pair[1])
                    elif _is_seq(record.get("seq")) and ("prediction" in record or "metric" in record):
                        kind = "prediction" if "prediction" in record else "metric"
                        body = record[kind]
                        if isinstance(body, dict):
                            found.append((record["seq"], kind, body))
                            max_seq = max(max_seq, record["seq"])
                        else:
                            self.bad_lines += 1
                            untidy = True
                    else:
                        # A bare row: the previous version of this callback (with an ``_id``) or an
                        # older TypeScript spool; either way one prediction.
                        untidy = True
                        legacy.append(("prediction", record))
            old_layout = self._read_old_layout(legacy)
            untidy = untidy or old_layout
            done = self._done_seqs(done_ranges, [seq for seq, _, _ in found])
            for seq, kind, body in sorted(found, key=lambda item: item[0]):
                if seq in done or any(seq in entries for entries in self._entries.values()):
                    continue  # answered, or a repeated seq (the first one stands, as in TypeScript)
                self._entries[kind][seq] = body
            self._next_seq = max_seq + 1
            for kind, body in legacy:
                self._entries[kind][self._next_seq] = body
                self._next_seq += 1
                self.migrated += 1
            if untidy:
                self._rewrite()
            if old_layout:
                # Only once the new file holds everything: a crash before this resends duplicates.
                base = self.path[: -len(".jsonl")] if self.path.endswith(".jsonl") else self.path
                for leftover in (self.path + ".done", base + ".metrics.jsonl", base + ".metrics.jsonl.done"):
                    _remove(leftover)

    def _cut_torn_tail(self) -> bool:
        with open(self.path, "rb+") as handle:
            data = handle.read()
            end = data.rfind(b"\n") + 1
            if end == len(data):
                return False
            tail = data[end:]
            if _json_object(tail) is not None:
                handle.write(b"\n")  # whole, only its newline missing: keep it (TypeScript does)
            else:
                self.torn_bytes = len(tail)
                handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        return True

    def _read_old_layout(self, legacy: List[Tuple[str, Row]]) -> bool:
        """The previous version's layout: ``_id`` keyed rows, answered ids in ``.done`` files, metric
        points in ``.metrics.jsonl``. Drops the answered rows, strips the ids; True if found."""
        base = self.path[: -len(".jsonl")] if self.path.endswith(".jsonl") else self.path
        metrics_path = base + ".metrics.jsonl"

        def answered(path: str) -> Set[str]:
            if not os.path.exists(path):
                return set()
            with open(path, encoding="utf-8", errors="replace") as handle:
                return {line.strip() for line in handle if line.strip()}

        found = os.path.exists(self.path + ".done") or os.path.exists(metrics_path) or any("_id" in row for _, row in legacy)
        if not found:
            return False
        done = answered(self.path + ".done")
        kept = [(kind, row) for kind, row in legacy if str(row.get("_id", "")) not in done]
        if os.path.exists(metrics_path):
            metrics_done = answered(metrics_path + ".done")
            for raw in _read_lines(metrics_path):
                row = _json_object(raw)
                if row is not None and str(row.get("_id", "")) not in metrics_done:
                    kept.append(("metric", row))
        legacy[:] = [(kind, {key: value for key, value in row.items() if key != "_id"}) for kind, row in kept]
        return True

    @staticmethod
    def _done_seqs(ranges: List[Tuple[int, int]], seqs: List[int]) -> Set[int]:
        """The seqs covered by done ranges (bisect over merged ranges: a long spool has many)."""
        merged: List[List[int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        starts = [start for start, _ in merged]
        done: Set[int] = set()
        for seq in seqs:
            i = bisect.bisect_right(starts, seq) - 1
            if i >= 0 and seq <= merged[i][1]:
                done.add(seq)
        return done

    def append(self, kind: str, rows: Sequence[Row]) -> List[int]:
        """Write records durably (fsync) and return their seqs; they may be sent from now on."""
        if not rows:
            return []
        with self._lock:
            self.open()
            seqs = list(range(self._next_seq, self._next_seq + len(rows)))
            self._next_seq += len(rows)
            try:
                self._write("a", [to_json({"seq": seq, kind: row}) for seq, row in zip(seqs, rows)], durable=True)
            except OSError as error:
                # Better sent without a safety net than not at all; the callback says so.
                self.write_error = f"{type(error).__name__}: {error}"
            for seq, row in zip(seqs, rows):
                self._entries[kind][seq] = dict(row)
            return seqs

    def pending(self, kind: str, max_rows: Optional[int] = None) -> List[Entry]:
        """The oldest unanswered records of one kind, up to ``max_rows``."""
        with self._lock:
            entries: List[Entry] = []
            for seq, row in self._entries[kind].items():
                if max_rows is not None and len(entries) >= max_rows:
                    break
                entries.append((seq, row))
            return entries

    def ids(self, kind: str) -> List[int]:
        with self._lock:
            return list(self._entries[kind])

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._entries[kind])

    def ack(self, kind: str, seqs: Sequence[int]) -> None:
        """Mark records done: the server holds them (or refused them for good)."""
        with self._lock:
            known = [seq for seq in seqs if seq in self._entries[kind]]
            if not known:
                return
            for seq in known:
                del self._entries[kind][seq]
            if not any(self._entries.values()):
                # Nothing left of either kind: the file goes, done records and all.
                _remove(self.path)
                self._answered = 0
                return
            try:
                # Not fsync'd (as in TypeScript): a done record lost to a machine crash only makes
                # the next run resend rows the server already holds, which come back as duplicates.
                self._write("a", [to_json({"done": to_ranges(known)})], durable=False)
            except OSError:
                return
            self._answered += len(known)
            live = sum(len(entries) for entries in self._entries.values())
            if self._answered >= self.COMPACT_AFTER and self._answered > 2 * live:
                self.compact()

    def reject(self, kind: str, rejected: Sequence[Tuple[int, Row, str]]) -> None:
        """Records the server refused for good: kept aside in ``<spool>.rejected`` with the reason, then done."""
        if not rejected:
            return
        with self._lock:
            try:
                self._write("a", [to_json({**row, "_reason": reason}) for _, row, reason in rejected], path=self.rejected_path, durable=False)
            except OSError:
                pass  # counted and logged by the caller; the file is a courtesy
            self.ack(kind, [seq for seq, _, _ in rejected])

    def compact(self) -> None:
        """Rewrite the spool with only the unanswered records, atomically."""
        with self._lock:
            try:
                self._rewrite()
            except OSError:
                pass  # the long file still reads right; the next compaction tries again

    def _rewrite(self) -> None:
        records = sorted(((seq, kind, row) for kind, entries in self._entries.items() for seq, row in entries.items()), key=lambda record: record[0])
        self._answered = 0
        if not records:
            _remove(self.path)
            return
        aside = f"{self.path}.{os.getpid()}.tmp"
        try:
            self._write("w", [to_json({"seq": seq, kind: row}) for seq, kind, row in records], path=aside, durable=True)
            os.replace(aside, self.path)
        except OSError:
            _remove(aside)
            raise
        _fsync_dir(os.path.dirname(self.path))

    def _write(self, mode: str, lines: Sequence[str], *, path: Optional[str] = None, durable: bool) -> None:
        target = path or self.path
        directory = os.path.dirname(target)
        created = not os.path.exists(target)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(target, mode, encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())  # the point of a write-ahead log is surviving a killed pod
        if created and directory:
            _fsync_dir(directory)


class Spool:
    """One kind of record (predictions by default) of a job's spool file.

    ``Spool(path)`` is the predictions; ``spool.metrics()`` the metric points of the same file.
    """

    def __init__(self, path: str, kind: str = "prediction", file: Optional[SpoolFile] = None) -> None:
        if kind not in SPOOL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SPOOL_KINDS)}")
        self.file = file or SpoolFile(path)
        self.kind = kind

    def metrics(self) -> "Spool":
        return Spool(self.file.path, "metric", self.file)

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def rejected_path(self) -> str:
        return self.file.rejected_path

    @property
    def torn_bytes(self) -> int:
        return self.file.torn_bytes

    @property
    def bad_lines(self) -> int:
        return self.file.bad_lines

    @property
    def write_error(self) -> Optional[str]:
        return self.file.write_error

    def open(self) -> int:
        """Load the file (once for both kinds); returns this kind's records still to send."""
        self.file.open()
        return self.file.count(self.kind)

    def append(self, rows: Sequence[Row]) -> List[int]:
        return self.file.append(self.kind, rows)

    def pending(self, max_rows: Optional[int] = None) -> List[Entry]:
        return self.file.pending(self.kind, max_rows)

    def ids(self) -> List[int]:
        return self.file.ids(self.kind)

    def count(self) -> int:
        return self.file.count(self.kind)

    def ack(self, ids: Sequence[int]) -> None:
        self.file.ack(self.kind, ids)

    def reject(self, rejected: Sequence[Tuple[int, Row, str]]) -> None:
        self.file.reject(self.kind, rejected)

    def compact(self) -> None:
        self.file.compact()


# --- Background writer ---------------------------------------------------------------------------


class Counters:
    """generated = persisted + rejected + spooled + pending, at every moment (read under ``lock``).

    - generated: rows made in this run, plus rows found in the spool at start.
    - persisted: rows the server confirmed it holds (inserted + duplicates + replaced).
    - rejected: rows the server refused for good (per-row reasons, or a 4xx other than 401/408/429);
      kept in ``<spool>.rejected`` with the reason.
    - spooled: rows on disk waiting for the server: it was unreachable, the token was refused,
      local mode, or a previous run left them.
    - pending: rows on disk that the writer is about to send or is sending (normally a handful).

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

    @property
    def pending(self) -> int:
        with self.lock:
            return self.generated - self.persisted - self.rejected - self.spooled


class PredictionWriter:
    """Ships rows from the spool, plus log lines and heartbeats, from a background thread.

    Training appends rows to the spool (fsync'd) and wakes the writer; the writer sends the
    oldest unacknowledged rows and acknowledges what the server stored. After a batch cannot be
    delivered the writer goes offline: rows wait in the spool (counted as spooled) and every
    ``probe_interval`` seconds a heartbeat or a one-attempt send checks whether the server is
    back. A 401 stops all sending with that token; the rows stay in the spool for ``sync``.
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
        notify: Callable[[str, str], None],
        heartbeat_interval: float = 5.0,
        probe_interval: float = 10.0,
        metrics_spool: Optional[Spool] = None,
    ) -> None:
        self.client = client
        self.spool = spool
        self.metrics_spool = metrics_spool or spool.metrics()
        self.counters = counters
        self.local_mode = local_mode
        self._status = status
        self._emit = emit  # printed and sent to pod.log
        self._notify = notify  # printed only (e.g. once the token is refused)
        self.heartbeat_interval = heartbeat_interval
        self.probe_interval = probe_interval
        self._queue: "queue.Queue[Tuple[str, Optional[threading.Event]]]" = queue.Queue()
        self._logs: List[Dict[str, str]] = []
        self._logs_lock = threading.Lock()
        self._held: Set[int] = set()  # seqs counted as spooled
        self._online = True
        self._next_probe = 0.0
        self._next_heartbeat = 0.0
        self._heartbeats = 0
        self._rejection_reported = False
        self._write_error_reported = False
        self._thread = threading.Thread(target=self._run, name="predictions-writer", daemon=True)
        self._started = False
        self._closed = False
        self.finishing = False  # training ended: heartbeats say "finishing" (a late row may still come)
        self.cancelled = False
        self.token_refused: Optional[str] = None  # the reason of the 401 that stopped the sending

    @property
    def sending(self) -> bool:
        return not self.local_mode and self.client is not None and self.token_refused is None

    # Called from the training thread ------------------------------------------------------------

    def start(self) -> None:
        """Open the spools (what an earlier run left counts as generated and spooled) and start."""
        if self._started:
            return
        self._started = True
        found = self.spool.open()
        self.metrics_spool.open()
        with self.counters.lock:
            self.counters.generated += found
        self._hold(self.spool.ids())
        if self.spool.torn_bytes:
            self._emit("warn", f"the spool {self.spool.path} ended with a line cut short by a killed process; that partial line was dropped")
        if found:
            self._emit("info", f"{found} prediction(s) left in {self.spool.path} by an earlier run will be uploaded")
        self._thread.start()

    def submit(self, rows: List[Row]) -> None:
        """Append rows to the spool (durably, before anything is sent) and wake the sender."""
        if not rows:
            return
        ids = self.spool.append(rows)
        with self.counters.lock:
            self.counters.generated += len(ids)
        self._report_write_error()
        if not self.sending or not self._online or self._closed:
            self._hold(ids)
        if not self._closed:
            self._queue.put(("wake", None))

    def log(self, level: str, message: str) -> None:
        """Queue a line for ``pod.log`` (printing is the caller's business)."""
        if self.client is None:
            return
        with self._logs_lock:
            self._logs.append({"level": level, "message": message[:LOG_LINE_MAX]})
            del self._logs[:-LOG_BUFFER_MAX]

    def metrics(self, rows: List[Row]) -> None:
        """Append metric points to their spool and wake the sender."""
        if not rows:
            return
        self.metrics_spool.append(rows)
        if not self._closed:
            self._queue.put(("wake", None))

    def flush(self, timeout: float = 60.0) -> bool:
        """Send what the spool holds (one attempt if offline); True when done within ``timeout``."""
        return self._request("flush", timeout)

    def close(self, timeout: float = 60.0) -> bool:
        """Flush once more, send a last heartbeat and stop the thread. Safe to call more than once.

        Bounded: retries stop waiting, and whatever is unacknowledged when ``timeout`` runs out (a
        server that hangs) is already on disk and counted as spooled.
        """
        if self._closed:
            return True
        self._closed = True
        if self.client is not None:
            self.client.stop.set()
        done = self._request("stop", timeout)
        self._hold(self.spool.ids())
        return done

    def _request(self, kind: str, timeout: float) -> bool:
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        self._queue.put((kind, done))
        return done.wait(timeout)

    # Accounting -------------------------------------------------------------------------------

    def _hold(self, ids: Iterable[int]) -> None:
        with self.counters.lock:
            new = [entry_id for entry_id in ids if entry_id not in self._held]
            self._held.update(new)
            self.counters.spooled += len(new)

    def _settle(self, result: SendResult) -> None:
        """Count and acknowledge what the server stored or refused; hold what it did not take."""
        self.spool.ack(result.stored)
        self.spool.reject(result.rejected)
        with self.counters.lock:
            for entry_id in result.stored + [entry_id for entry_id, _, _ in result.rejected]:
                if entry_id in self._held:
                    self._held.discard(entry_id)
                    self.counters.spooled -= 1
            self.counters.persisted += len(result.stored)
            self.counters.rejected += len(result.rejected)
            self.counters.duplicates += result.duplicates
            self.counters.replaced += result.replaced
            first_altered = self.counters.altered == 0
            self.counters.altered += result.altered
        if result.unsent:
            self._hold(entry_id for entry_id, _ in result.unsent)
        if result.altered and first_altered:
            # Said loudly once; the summary gives the total over the run.
            self._emit("warn", altered_note(result.altered) + " (the summary gives the total)")
        if result.replaced:
            self._emit(
                "info",
                f"{result.replaced} prediction(s) replaced rows the server held at the same (step, sampleIndex) "
                "with other content (a run resumed from a checkpoint?)",
            )
        for _, row, reason in result.rejected[:5]:
            self._emit("error", f"server rejected prediction step={row.get('step')} sampleIndex={row.get('sampleIndex')}: {reason}")
        if len(result.rejected) > 5:
            self._emit("error", f"... and {len(result.rejected) - 5} more rejected prediction(s)")
        if result.rejected:
            self._emit("error", f"rejected predictions are kept with their reasons in {self.spool.rejected_path}")

    def _report_write_error(self) -> None:
        error = self.spool.write_error or self.metrics_spool.write_error
        if error and not self._write_error_reported:
            self._write_error_reported = True
            self._emit("error", f"cannot write the spool {self.spool.path} ({error}); predictions are sent from memory and a killed pod would lose them")

    # The writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            deadline = self._next_heartbeat if self._online else min(self._next_heartbeat, self._next_probe)
            try:
                kind, done = self._queue.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                kind, done = "tick", None
            try:
                if kind in ("wake", "tick"):
                    self._pump(force=False)
                else:
                    self._pump(force=True)
                    self._send_metrics(force=True)
                    if kind == "stop" or self.finishing:
                        # The job page sees the end-of-training counters at once.
                        self._heartbeat("finishing")
                    self._send_logs()
                self._periodic()
            except Exception as error:  # the writer must outlive any single bad request
                self._emit("error", f"predictions writer: unexpected {type(error).__name__}: {error}")
            finally:
                if done is not None:
                    done.set()
            if kind == "stop":
                return

    def _periodic(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval
            self._heartbeat("finishing" if self.finishing else "running" if self._heartbeats else "starting")
        self._pump(force=False)
        self._send_metrics(force=False)
        self._send_logs()

    def _may_send(self, force: bool) -> bool:
        if not self.sending:
            return False
        return self._online or force or time.monotonic() >= self._next_probe

    def _pump(self, *, force: bool) -> None:
        """Send the spool's unacknowledged rows, oldest first, until it is empty or a send fails."""
        if not self._may_send(force):
            self._hold(self.spool.ids())
            return
        while True:
            entries = self.spool.pending(BATCH_MAX_ROWS)
            if not entries:
                return
            # Offline and due a probe: one attempt only, so a dead server costs one timeout.
            assert self.client is not None
            result = send_entries(self.client, entries, attempts=None if self._online else 1)
            self._settle(result)
            if result.refused is not None:
                self._refuse_token(result.refused)
                return
            if result.unreachable is not None:
                self._go_offline(str(result.unreachable), result.unreachable.retry_after)
                self._hold(self.spool.ids())
                return
            if not self._online:
                self._online = True
                self._emit("info", "the server answers again; uploading the spooled predictions")

    def _go_offline(self, why: str, retry_after: Optional[float] = None) -> None:
        if self._online:
            self._emit("warn", f"server unreachable ({why}); spooling predictions to {self.spool.path} and retrying every {self.probe_interval:g}s")
        self._online = False
        self._next_probe = time.monotonic() + max(self.probe_interval, retry_after or 0.0)

    def _refuse_token(self, error: PodRejected) -> None:
        """A 401: nothing this token sends will be taken again. Keep every row; say how to recover, once."""
        if self.token_refused is not None:
            return
        self.token_refused = error.reason or "unauthorized"
        if error.reason == "job_ended":
            self.cancelled = True
            self._notify("warn", f"the job has ended on the server ({error.message}); training stops at the next step")
        self._hold(self.spool.ids())
        if error.reason == "job_ended" and self.spool.count() == 0:
            return  # nothing to recover; a row made later is kept, and the summary says how to sync it
        self._notify("error", rotate_hint(error.reason, self.spool.path, self.spool.count()))

    def _heartbeat(self, status: str) -> None:
        if self.client is None or self.token_refused is not None:
            return
        payload = {**self._status(), "status": status}
        with self.counters.lock:
            payload["counters"] = {
                "generated": self.counters.generated,
                "persisted": self.counters.persisted,
                "spooled": self.counters.spooled,
                "rejected": self.counters.rejected,
            }
            payload["triggerFires"] = self.counters.trigger_fires
        try:
            self._heartbeats += 1
            self.client.mutate("pod.heartbeat", payload, attempts=1)
        except PodUnreachable as error:
            self._go_offline(str(error), error.retry_after)
            return
        except PodRejected as error:
            if error.status == 401:
                self._refuse_token(error)
            elif not self._rejection_reported:
                self._rejection_reported = True
                self._emit("error", f"heartbeat refused by the server: {error.message}")
            return
        if not self._online:
            # The server answers again: try the spool at once instead of waiting for a probe.
            self._online = True
            self._pump(force=True)

    def _send_metrics(self, *, force: bool) -> None:
        """Ship spooled metric points; a point the server refuses is reported once and let go."""
        if not self.sending or (not self._online and not force):
            return
        assert self.client is not None
        while True:
            entries = self.metrics_spool.pending(BATCH_MAX_ROWS)
            if not entries:
                return
            result = send_entries(self.client, entries, procedure="pod.writeMetrics", key="metrics", attempts=1)
            self.metrics_spool.ack(result.stored)
            self.metrics_spool.reject(result.rejected)
            refused = result.rejected
            if refused:
                with self.counters.lock:
                    self.counters.metrics_refused += len(refused)
                # JSON-quoted, as the TypeScript pod writes it: the name may hold the control character that got it refused.
                reasons = "; ".join(f"{json.dumps(row.get('name'))} at step {row.get('step')}: {reason}" for _, row, reason in refused[:5])
                more = f" (and {len(refused) - 5} more)" if len(refused) > 5 else ""
                self._emit("error", f"server refused {len(refused)} of {len(entries)} metric point(s), not resent: {reasons}{more}")
            if result.refused is not None:
                self._refuse_token(result.refused)
                return
            if result.unreachable is not None:
                return  # kept in the metrics spool for the next round

    def _send_logs(self) -> None:
        if self.client is None or not self._online or self.token_refused is not None:
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
            except PodRejected as error:
                if error.status == 401:
                    self._refuse_token(error)
                    return
                # a refused log batch is not worth a second try; the lines are on stderr
            with self._logs_lock:
                del self._logs[: len(lines)]


# --- Samples: what every fire predicts -----------------------------------------------------------


def _is_conversation(value: Any) -> bool:
    """A list of chat messages (``{"role": ..., "content": ...}``): TRL's format and most chat datasets'."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(message, Mapping) and "role" in message for message in value)


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(str(part.get("text", "")) if isinstance(part, Mapping) else str(part) for part in content)
    return str(content)


def _completion_of(sample: Mapping[str, Any], index: int) -> str:
    for key in COMPLETION_KEYS:
        if key in sample and sample[key] is not None:
            value = sample[key]
            if _is_conversation(value):
                # TRL's conversational prompt-completion rows: the completion is the assistant's message(s).
                return "\n".join(message_text(message.get("content")) for message in value)
            return str(value)
    raise ValueError(f"sample {index} needs one of the keys {', '.join(COMPLETION_KEYS)} beside 'prompt' (or 'messages' ending with the assistant's answer)")


class Sample:
    """One sample as every fire predicts it: prompt text, or a conversation rendered with the chat template."""

    __slots__ = ("conversation", "ground_truth", "text")

    def __init__(self, text: Optional[str], conversation: Optional[List[Dict[str, Any]]], ground_truth: str) -> None:
        self.text = text  # None until a conversation is rendered
        self.conversation = conversation
        self.ground_truth = ground_truth

    @property
    def add_special_tokens(self) -> bool:
        # A rendered chat template already holds its special tokens (BOS...); adding them again doubles them.
        return self.conversation is None


def parse_sample(sample: Mapping[str, Any], index: int) -> Sample:
    """Text rows (``prompt`` + ``completion``/``response``/``output``) or conversational rows: ``messages``
    ending with the assistant's answer (the ground truth), or TRL's ``prompt``/``completion`` message lists."""
    if "messages" in sample:
        messages = sample["messages"]
        if not _is_conversation(messages):
            raise ValueError(f"sample {index}: 'messages' must be a non-empty list of {{'role': ..., 'content': ...}} dicts")
        conversation = [dict(message) for message in messages]
        if conversation[-1].get("role") == "assistant":
            if len(conversation) == 1:
                raise ValueError(f"sample {index}: 'messages' holds only the assistant's answer; there is nothing to prompt with")
            return Sample(None, conversation[:-1], message_text(conversation[-1].get("content")))
        return Sample(None, conversation, _completion_of(sample, index))
    if "prompt" not in sample:
        raise ValueError(f"sample {index} has neither 'prompt' nor 'messages' (rows need prompt and completion, or messages ending with the answer)")
    prompt = sample["prompt"]
    if _is_conversation(prompt):
        return Sample(None, [dict(message) for message in prompt], _completion_of(sample, index))
    return Sample(str(prompt), None, _completion_of(sample, index))


def render_chat(processing: Any, conversation: Sequence[Mapping[str, Any]]) -> str:
    """A conversation as the model sees it: the chat template, with the assistant's turn opened."""
    # A processor renders with its own template; a bare tokenizer with its; a processor without one with its tokenizer's.
    candidates = (processing, getattr(processing, "tokenizer", None))
    owner = next((candidate for candidate in candidates if candidate is not None and getattr(candidate, "chat_template", None)), None)
    if owner is None:
        raise ValueError(
            "conversational samples (messages) need a tokenizer with a chat template, and this one has none "
            "(tokenizer.chat_template is None): set tokenizer.chat_template, or pass the samples as prompt/completion text"
        )
    return str(owner.apply_chat_template([dict(message) for message in conversation], tokenize=False, add_generation_prompt=True))


def _strategy_name(value: Any) -> str:
    # IntervalStrategy is a str enum in recent versions and a plain Enum in older ones.
    return str(getattr(value, "value", value)).lower()


# --- Several processes (torch.distributed) -------------------------------------------------------
#
# Nothing here imports torch: if a process group is initialised, torch.distributed is loaded.


def _process_group() -> Any:
    """``torch.distributed`` when a group of two or more processes is initialised, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return None
    return dist if dist.get_world_size() > 1 else None


def agree_across_ranks(stop: bool, device: Any = None) -> bool:
    """Rank 0's decision to stop, on every rank, so all ranks stop at the same step.

    Under torch.distributed only rank 0 talks to the server; a rank that stopped alone would leave
    the others waiting in the next collective for ever (gloo aborts with a collective mismatch,
    NCCL hangs until ``ddp_timeout``). Every rank must call this at the same points. ``device`` is
    the rank's training device (``args.device``), which the back end can move tensors from.
    """
    dist = _process_group()
    torch = sys.modules.get("torch")
    if dist is None or torch is None:
        return stop
    backend = str(dist.get_backend())
    if "gloo" in backend:
        where = torch.device("cpu")  # gloo, alone or beside NCCL ("cpu:gloo,cuda:nccl"), takes CPU tensors
    elif device is not None:
        where = device
    elif backend == "nccl":
        where = torch.device("cuda", torch.cuda.current_device())
    else:
        where = torch.device("cpu")
    flag = torch.tensor([1 if stop else 0], dtype=torch.int32, device=where)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def generation_is_collective(model: Any, args: Any) -> bool:
    """Whether ``model.generate`` needs every rank: parameters sharded by DeepSpeed ZeRO-3 or FSDP.

    Then transformers generates with ``synced_gpus=True`` (each forward gathers parameters, each
    decoding step all-reduces a "finished" flag: generation/utils.py), so a rank that generated
    alone would wait for the others for ever. Plain DDP keeps a whole model on every rank: rank 0
    generates alone. The answer depends only on the configuration, the same on every rank.
    """
    if _process_group() is None:
        return False
    # transformers' own test for ZeRO-3; the module is loaded whenever DeepSpeed was configured through it.
    deepspeed = sys.modules.get("transformers.integrations.deepspeed")
    zero3 = getattr(deepspeed, "is_deepspeed_zero3_enabled", None)
    if callable(zero3) and zero3():
        return True
    if getattr(args, "fsdp", None):  # 4.x: a non-empty list of options; 5.x: True
        return True
    if model is not None and getattr(model, "_is_fsdp_managed_module", False):  # what FSDP2's fully_shard marks (transformers' test too)
        return True
    fsdp = getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)
    if isinstance(fsdp, type) and isinstance(model, fsdp):
        return True
    # `accelerate launch` with an FSDP or DeepSpeed config, without the TrainingArguments saying so.
    accelerator_state = getattr(sys.modules.get("accelerate.state"), "AcceleratorState", None)
    shared = getattr(accelerator_state, "_shared_state", None)
    if shared:
        if shared.get("fsdp_plugin") is not None:
            return True
        plugins = shared.get("deepspeed_plugins")
        plugin_list = list(plugins.values()) if isinstance(plugins, Mapping) else [plugins]
        if any(getattr(plugin, "zero_stage", None) == 3 for plugin in plugin_list):
            return True
    return False


@contextlib.contextmanager
def _whole_parameters(model: Any) -> Iterator[None]:
    """FSDP1 keeps the root module's parameters sharded outside its own forward, and ``generate``
    is not that forward: gather the root's (not the nested units', which gather in their forward)."""
    fsdp = getattr(sys.modules.get("torch.distributed.fsdp"), "FullyShardedDataParallel", None)
    if isinstance(fsdp, type) and isinstance(model, fsdp):
        with getattr(fsdp, "summon_full_params")(model, writeback=False, recurse=False):  # noqa: B009 - typed as a bare type
            yield
    else:
        yield


# --- Generation: greedy, batched, left-padded, truncated to the model's context -------------------

# Greedy by default: a checkpoint whose generation config samples would give other text at every
# fire for the same weights, and epochs could not be compared. generation_kwargs overrides these.
DEFAULT_GENERATION_KWARGS: Dict[str, Any] = {"do_sample": False, "num_beams": 1}
# What the callback builds itself (inputs) or sets with its own argument.
OWN_GENERATION_KWARGS = ("input_ids", "attention_mask", "inputs", "token_type_ids", "max_new_tokens")
# Config attributes that hold a model's context length, by family (GPT-2: n_positions, BLOOM: seq_length...).
CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")
TOKENIZER_UNBOUNDED = 10**9  # tokenizers without a known limit say int(1e30)


def model_context_length(config: Any) -> Optional[int]:
    """The number of positions the model can attend to, when its config says so."""
    configs = [config]
    get_text_config = getattr(config, "get_text_config", None)
    if callable(get_text_config):
        try:
            configs.append(get_text_config())  # a vision-language model keeps it on its text part
        except Exception:  # an odd config only loses the hint
            pass
    for candidate in configs:
        for name in CONTEXT_ATTRIBUTES:
            value = getattr(candidate, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def prompt_token_limit(config: Any, tokenizer: Any, max_new_tokens: int, *, encoder_decoder: bool) -> Optional[int]:
    """How many prompt tokens fit: the context (the model's or the tokenizer's, the smaller), minus
    the new tokens for a decoder-only model, whose answer shares the context with the prompt."""
    tokenizer_max = getattr(tokenizer, "model_max_length", None)
    lengths = [length for length in (model_context_length(config), tokenizer_max) if isinstance(length, int) and 0 < length < TOKENIZER_UNBOUNDED]
    if not lengths:
        return None
    window = min(lengths)
    return window if encoder_decoder else max(1, window - max_new_tokens)


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool) -> Tuple[List[List[int]], List[List[int]]]:
    """Token ids and attention mask of a batch padded to its longest row.

    Left for a decoder-only model: generation continues from the last position of every row, so
    the padding must not sit between the prompt and its answer.
    """
    width = max((len(row) for row in rows), default=0)
    ids: List[List[int]] = []
    mask: List[List[int]] = []
    for row in rows:
        pad = width - len(row)
        ids.append([pad_id] * pad + list(row) if left else list(row) + [pad_id] * pad)
        mask.append([0] * pad + [1] * len(row) if left else [1] * len(row) + [0] * pad)
    return ids, mask


def _first_id(value: Any) -> Optional[int]:
    """A token id from a config or tokenizer field (eos_token_id may be a list)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _accepts_attention_mask(model: Any) -> bool:
    try:
        parameters = inspect.signature(model.forward).parameters
    except (AttributeError, TypeError, ValueError):
        return True  # nearly every text model takes one; generate() says so if not
    return "attention_mask" in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _model_device(model: Any) -> Any:
    device = getattr(model, "device", None)
    if device is not None:
        return device
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for parameter in parameters():
            return parameter.device
    return "cpu"


# --- The best model (load_best_model_at_end) -----------------------------------------------------


def best_checkpoint_step(args: Any, state: Any) -> Optional[Tuple[str, int]]:
    """The best checkpoint Trainer loads at the end of training, and its step; None when it loads none."""
    checkpoint = getattr(state, "best_model_checkpoint", None)
    if not getattr(args, "load_best_model_at_end", False) or not checkpoint:
        return None
    step = getattr(state, "best_global_step", None)  # transformers 4.50+
    if not (isinstance(step, int) and not isinstance(step, bool) and step > 0):
        match = re.search(r"checkpoint-(\d+)$", str(checkpoint).rstrip("/\\"))
        if match is None:
            return None
        step = int(match.group(1))
    return str(checkpoint), step


def epoch_at_step(state: Any, step: int) -> int:
    """The 1-based epoch of a past step: from Trainer's log (every evaluation's entry has both), else in proportion."""
    for entry in reversed(getattr(state, "log_history", None) or []):
        if isinstance(entry, Mapping) and entry.get("step") == step and isinstance(entry.get("epoch"), (int, float)):
            return epoch_number(float(entry["epoch"]))
    global_step = getattr(state, "global_step", 0) or 0
    epoch = getattr(state, "epoch", None)
    if global_step > 0 and epoch:
        return epoch_number(float(epoch) * step / global_step)
    return 1


# --- The callback --------------------------------------------------------------------------------

if TYPE_CHECKING:
    # Type checkers see the subclass every instance is when transformers is installed, so
    # trainer.add_callback(cb) type-checks; at run time the base is chosen in __new__.
    from transformers import TrainerCallback as _CallbackBase  # type: ignore[import-not-found, unused-ignore]
else:
    _CallbackBase = object

_TRAINER_CALLBACK_CLASSES: Dict[type, type] = {}


def _trainer_callback_class(cls: type) -> type:
    """``cls`` with ``transformers.TrainerCallback`` as a base when transformers is installed, else ``cls``.

    Chosen when the first callback is made, not when this module is imported: importing
    transformers takes seconds (torch with it), which ``sync`` and a stdlib-only install never pay.
    """
    if cls not in _TRAINER_CALLBACK_CLASSES:
        base: Optional[type] = None
        if "transformers" in sys.modules or importlib.util.find_spec("transformers") is not None:
            try:
                from transformers import TrainerCallback

                base = TrainerCallback
            except Exception:  # a broken install: the duck-typed callback still works
                base = None
        if base is None or issubclass(cls, base):
            _TRAINER_CALLBACK_CLASSES[cls] = cls
        else:
            subclass = type(cls.__name__, (cls, base), {"__module__": cls.__module__, "__doc__": cls.__doc__, "__qualname__": cls.__qualname__})
            _TRAINER_CALLBACK_CLASSES[cls] = subclass
            _TRAINER_CALLBACK_CLASSES[subclass] = subclass
    return _TRAINER_CALLBACK_CLASSES[cls]


class PredictionsCallback(_CallbackBase):  # type: ignore[misc, unused-ignore]  # Any where transformers is absent
    """A ``transformers.TrainerCallback`` that samples predictions while the model trains.

    A ``TrainerCallback`` subclass when transformers is installed (the base is chosen when the
    first instance is made, so importing this module never imports transformers); duck-typed
    without it: ``Trainer`` calls every ``on_*`` event on every callback, and the ones this class
    does not use are answered by ``__getattr__``.

    Generation (``model.generate``, unless ``generate_fn`` replaces it) is greedy unless
    ``generation_kwargs`` says otherwise, batched ``batch_size`` prompts at a time with left
    padding for decoder-only models, and each prompt keeps its last tokens that fit the model's
    context with room for ``max_new_tokens``. Only the main process writes rows; under plain DDP
    only it generates, and when parameters are sharded (DeepSpeed ZeRO-3, FSDP), where
    ``generate`` is a collective, every rank generates the same prompts.

    Training's end is not the callback's end: ``trainer.evaluate()`` after ``trainer.train()``, or
    a second ``train()``, makes rows after ``on_train_end``; they are sent like any other (the
    server accepts a finished job's token for a grace period). The writer stops at ``close()``,
    at interpreter exit or on SIGTERM.

    Args:
        samples: rows with ``prompt`` and ``completion`` (or ``response`` / ``output``), or
            conversational rows: ``messages`` (``[{"role", "content"}, ...]``) ending with the
            assistant's answer, which is the ground truth, or TRL's ``prompt``/``completion``
            message lists. Conversations are rendered with the tokenizer's chat template
            (``add_generation_prompt=True``); the rendered text is the row's prompt.
        tokenizer: used by the default generation (falls back to the ``processing_class`` or
            ``tokenizer`` that Trainer passes to callbacks).
        sample_frequency: ``"eval"`` (after each evaluation), ``"epoch"`` or ``"steps"``.
        step_interval: optimizer steps between samples; required for ``"steps"``.
        sample_count: how many samples, chosen once with ``seed``.
        max_new_tokens: the most tokens generated per prediction.
        generation_kwargs: passed to ``model.generate`` over the defaults ``do_sample=False,
            num_beams=1`` (e.g. ``{"do_sample": True, "temperature": 0.7}``, ``{"repetition_penalty": 1.2}``).
        batch_size: prompts per ``generate`` call.
        max_prompt_tokens: prompt tokens kept (the last ones); by default the model's context
            (``max_position_embeddings``, ``n_positions``..., or ``tokenizer.model_max_length``)
            minus ``max_new_tokens``. The stored prompt is always the whole text.
        generate_fn: ``(prompts) -> completions``, replacing ``model.generate``.
        spool_path: the write-ahead spool (JSONL); one per job by default, in the working directory.
        environ: the environment to read ``JOB_ID`` / ``JOB_TOKEN`` / ``API_URL`` from.
        finish_job: report ``pod.finish`` when training ends with every prediction stored.
        http_timeout: seconds one request may take (a server that hangs costs this per attempt).
        exit_timeout: seconds the final flush may take at exit; what is not stored by then stays
            in the spool for the next run or ``sync``.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "PredictionsCallback":
        return cast("PredictionsCallback", object.__new__(_trainer_callback_class(cls)))

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]],
        *,
        tokenizer: Any = None,
        sample_frequency: str = "eval",
        step_interval: Optional[int] = None,
        sample_count: int = 5,
        max_new_tokens: int = 64,
        generation_kwargs: Optional[Mapping[str, Any]] = None,
        batch_size: int = 8,
        max_prompt_tokens: Optional[int] = None,
        seed: int = 42,
        generate_fn: Optional[Callable[[List[str]], List[str]]] = None,
        spool_path: Optional[str] = None,
        environ: Optional[Mapping[str, str]] = None,
        heartbeat_interval: float = 5.0,
        probe_interval: float = 10.0,
        retry_attempts: int = 5,
        backoff_base: float = 0.5,
        http_timeout: float = 15.0,
        exit_timeout: float = 30.0,
        finish_job: bool = True,
        install_handlers: bool = True,
        stream: Optional[TextIO] = None,
    ) -> None:
        if sample_frequency not in TRIGGERS:
            raise ValueError(f"sample_frequency must be one of {', '.join(TRIGGERS)}, got {sample_frequency!r}")
        if sample_frequency == "steps" and (not isinstance(step_interval, int) or step_interval < 1):
            raise ValueError('sample_frequency="steps" needs step_interval, a whole number of optimizer steps >= 1 (e.g. step_interval=50)')
        if sample_count < 1:
            raise ValueError("sample_count must be at least 1")
        if len(samples) == 0:
            raise ValueError("samples is empty: pass the rows to predict on (dicts with prompt and completion)")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be at least 1 (or None: the model's context minus max_new_tokens)")
        own = sorted(set(generation_kwargs or {}) & set(OWN_GENERATION_KWARGS))
        if own:
            raise ValueError(f"generation_kwargs may not set {', '.join(own)}: the callback builds the inputs, and max_new_tokens is its own argument")
        if int((generation_kwargs or {}).get("num_return_sequences", 1) or 1) != 1:
            raise ValueError("generation_kwargs: num_return_sequences must be 1 (one prediction per sample and step)")

        self.sample_frequency = sample_frequency
        self.step_interval = step_interval
        self.max_new_tokens = max_new_tokens
        self.generation_kwargs: Dict[str, Any] = {**DEFAULT_GENERATION_KWARGS, **(generation_kwargs or {})}
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer = tokenizer
        self.generate_fn = generate_fn
        self.finish_job = finish_job
        self.exit_timeout = exit_timeout
        self._install_handlers = install_handlers
        self._stream = stream

        # Chosen once, so every fire predicts the same rows and epochs line up for comparison.
        chosen = random.Random(seed).sample(range(len(samples)), k=min(sample_count, len(samples)))
        self._samples = [parse_sample(samples[i], i) for i in chosen]
        # What the rows carry: the prompt as the model gets it (a conversation once rendered) and the answer.
        self.samples: List[Dict[str, str]] = [{"prompt": sample.text or "", "groundTruth": sample.ground_truth} for sample in self._samples]
        if tokenizer is not None:
            self._render_conversations(tokenizer)  # a tokenizer without a chat template is refused here, at once

        env = PodEnv(os.environ if environ is None else environ)
        self.missing = env.missing
        self.local_mode = bool(self.missing)
        self.env_presence = dict(env.presence)
        self.spool = Spool(spool_path or default_spool_path(env.job_id))
        # Even in local mode a heartbeat can still tell the server which variable is missing,
        # when the two it needs to reach the job are there.
        client = None
        if env.can_connect:
            assert env.api_url is not None and env.token is not None
            client = PodClient(env.api_url, env.token, attempts=retry_attempts, backoff_base=backoff_base, timeout=http_timeout)
        self.counters = Counters()
        self.writer = PredictionWriter(
            client,
            self.spool,
            self.counters,
            local_mode=self.local_mode,
            status=self._status,
            emit=self._log,
            notify=self._print,
            heartbeat_interval=heartbeat_interval,
            probe_interval=probe_interval,
        )
        self._client = client
        self._epoch = 0.0
        self._step = 0
        self._total_steps = 0
        self._fired_steps: Set[int] = set()
        self._started = False
        self._closed = False
        self._finished_at: Optional[Tuple[int, int]] = None  # (generated, persisted) when pod.finish was last sent
        self._train_ended = False
        self._summarised: Optional[Dict[str, int]] = None
        self._previous_sigterm: Any = None
        self._warned_clipped = False
        self._warned_truncated = False
        self._stopped_by_server = False  # the server ended the job and every rank stopped

        if self._is_main_rank():
            for problem in env.problems:
                self._print("error", f"configuration: {problem}")
            if self.local_mode:
                self._log(
                    "warn",
                    f"LOCAL MODE: missing environment variable(s) {', '.join(self.missing)}; "
                    f"predictions will be written to {self.spool.path} and NOT sent to the server. "
                    f"Upload them later with: {SYNC_COMMAND} {self.spool.path}",
                )

    # Trainer events -----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Trainer calls every event on every callback; unused ones (and events added by future
        # versions) are no-ops. Returning None leaves Trainer's control object untouched.
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # Every rank keeps the fired steps: when generation is a collective, every rank must make
        # the same decisions. A second train() counts its steps from 0 again: its fires are new
        # rows (replacing the first run's at the same step), not repeats to skip.
        self._fired_steps.clear()
        self._stopped_by_server = False
        if any(sample.text is None for sample in self._samples):
            # Conversations are rendered now, on every rank alike: a missing chat template stops
            # the run at its start, not at its first evaluation hours later.
            self._render_conversations(self._processing_class(kwargs))
        if not self._is_world_zero(state):
            return
        self._track(state)
        self._train_ended = False
        self.writer.finishing = False
        self._start()
        if self.sample_frequency == "eval" and args is not None:
            strategy = _strategy_name(getattr(args, "eval_strategy", getattr(args, "evaluation_strategy", "no")))
            if strategy == "no":
                self._log(
                    "error",
                    'sample_frequency="eval" but eval_strategy is "no": no evaluation runs during training, so no predictions '
                    'are sampled until you call trainer.evaluate() yourself. Set eval_strategy="epoch" or "steps" (with an '
                    'eval_dataset), or use sample_frequency="epoch".',
                )

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        world_zero = self._is_world_zero(state)
        # Every rank asks, every step: the collective must be entered by all ranks or none.
        if agree_across_ranks(world_zero and self.writer.cancelled, getattr(args, "device", None)):
            self._stopped_by_server = True
            if control is not None:
                control.should_training_stop = True
        if world_zero:
            self._track(state)
        step = int(getattr(state, "global_step", 0) or 0)
        if self.sample_frequency == "steps" and self.step_interval and step > 0 and step % self.step_interval == 0:
            self._fire("steps", args, state, kwargs)

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> None:
        # Trainer logs train and eval numbers here (loss, eval_loss, eval_precision@5...); a NaN
        # loss is sent as "NaN" rather than dropped: a diverging run is worth seeing.
        if not logs or not self._is_world_zero(state):
            return
        self._track(state)
        self._start()
        step = int(getattr(state, "global_step", 0) or 0)
        self.writer.metrics(metric_rows(logs, step=step, epoch=float(getattr(state, "epoch", None) or 0.0)))

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sample_frequency != "eval":
            return
        self._fire("eval", args, state, kwargs)
        if self._train_ended and self._is_world_zero(state):
            # trainer.evaluate() after train(): nothing else is coming to flush these rows soon.
            self._end_of_training()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.sample_frequency == "epoch":
            self._fire("epoch", args, state, kwargs)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._fire_best_model(args, state, kwargs)
        if not self._is_world_zero(state):
            return
        self._track(state)
        self._train_ended = True
        self._end_of_training()

    # Firing -------------------------------------------------------------------------------------

    def _fire(
        self,
        trigger: str,
        args: Any,
        state: Any,
        kwargs: Mapping[str, Any],
        *,
        at: Optional[Tuple[int, int]] = None,
    ) -> None:
        """Generate the samples and queue their rows at this step, or at ``at`` = (epoch, step)."""
        if at is None:
            step = int(getattr(state, "global_step", 0) or 0)
            # A dict of eval datasets calls on_evaluate once per dataset at the same step; the rows
            # are keyed by (step, sampleIndex), so one batch per step is all there can be.
            if step in self._fired_steps:
                return
            self._fired_steps.add(step)
            epoch = epoch_number(getattr(state, "epoch", None))
        else:
            epoch, step = at
        world_zero = self._is_world_zero(state)
        # Plain DDP: rank 0 alone, with its whole copy of the model. ZeRO-3 / FSDP: generate() is
        # a collective, so every rank generates the same prompts; only the main process writes.
        if not world_zero and not generation_is_collective(kwargs.get("model"), args):
            return
        if world_zero:
            self._start()
            self._track(state)
            with self.counters.lock:
                self.counters.trigger_fires += 1
        try:
            completions = self._generate(kwargs)
        except Exception as error:  # a failed fire is logged; training goes on
            if world_zero:
                self._log("error", f"generation failed at step {step} ({trigger}): {type(error).__name__}: {error}")
            return
        if not world_zero:
            return
        rows = []
        for index, (sample, completion) in enumerate(zip(self.samples, completions)):
            row = {"epoch": epoch, "step": step, "sampleIndex": index, "trigger": trigger}
            for key, value in (("prompt", sample["prompt"]), ("groundTruth", sample["groundTruth"]), ("prediction", str(completion))):
                row[key], clipped = clip_field(value, FIELD_LIMITS.get(key, FIELD_LIMIT))
                if clipped and not self._warned_clipped:
                    self._warned_clipped = True
                    self._log("warn", f"a {key} longer than {FIELD_LIMITS.get(key, FIELD_LIMIT)} characters was clipped to fit the server's limit")
            rows.append(row)
        # On disk (fsync'd) before this returns: from here on a killed pod cannot lose them.
        self.writer.submit(rows)
        if self._closed:
            self._print("warn", f"{len(rows)} prediction(s) made after the callback was closed are in {self.spool.path}; upload them with sync")

    def _fire_best_model(self, args: Any, state: Any, kwargs: Mapping[str, Any]) -> None:
        """With ``load_best_model_at_end`` the model Trainer keeps is the best checkpoint's, loaded
        just before ``on_train_end``: its predictions are recorded at that checkpoint's step.

        Same key, same trigger: the wire has no field to mark them (the job log says which rows
        they are). Greedy decoding of the weights that step saved gives that step's text again,
        so where the trigger already fired there the server answers "duplicate"; where it did not
        (a checkpoint between epoch ends, say) these are the step's only rows.
        """
        found = best_checkpoint_step(args, state)
        if found is None or self._stopped_by_server:
            return
        checkpoint, step = found
        epoch = epoch_at_step(state, step)
        if self._is_world_zero(state):
            metric = getattr(args, "metric_for_best_model", None) or "loss"
            score = getattr(state, "best_metric", None)
            self._log(
                "info",
                f"load_best_model_at_end: the best checkpoint ({os.path.basename(checkpoint.rstrip('/'))}, {metric}={score}) was loaded; "
                f"its predictions are recorded at its step {step} (epoch {epoch}), replacing that step's rows if they differ",
            )
        self._fire(self.sample_frequency, args, state, kwargs, at=(epoch, step))

    def _processing_class(self, kwargs: Mapping[str, Any]) -> Any:
        # The one given to the callback, else Trainer's (`tokenizer` before transformers 4.46).
        for candidate in (self.tokenizer, kwargs.get("processing_class"), kwargs.get("tokenizer")):
            if candidate is not None:
                return candidate
        return None

    def _render_conversations(self, processing: Any) -> None:
        """Turn the conversational samples into prompt text with the chat template (once)."""
        pending = [index for index, sample in enumerate(self._samples) if sample.text is None and sample.conversation is not None]
        if not pending:
            return
        if processing is None:
            raise ValueError("conversational samples (messages) need a tokenizer to render them with its chat template: pass tokenizer=...")
        for index in pending:
            sample = self._samples[index]
            assert sample.conversation is not None
            sample.text = render_chat(processing, sample.conversation)
            self.samples[index]["prompt"] = sample.text

    def _generate(self, kwargs: Mapping[str, Any]) -> List[str]:
        self._render_conversations(self._processing_class(kwargs))
        prompts = [sample["prompt"] for sample in self.samples]
        if self.generate_fn is not None:
            completions = list(self.generate_fn(prompts))
        else:
            completions = self._generate_with_model(kwargs)
        if len(completions) != len(prompts):
            raise ValueError(f"generation returned {len(completions)} completion(s) for {len(prompts)} prompt(s)")
        return completions

    def _generate_with_model(self, kwargs: Mapping[str, Any]) -> List[str]:
        """``model.generate`` on the samples, ``batch_size`` at a time; the text of the answers only."""
        import torch  # lazy: the module must import without torch installed

        model = kwargs.get("model")
        processing = self._processing_class(kwargs)
        if model is None or processing is None:
            raise ValueError("no model/tokenizer to generate with: pass tokenizer=... or generate_fn=...")
        # A multimodal processor wraps the text tokenizer these prompts need.
        inner = getattr(processing, "tokenizer", None)
        tokenizer = processing if inner is None else inner
        main_input = getattr(model, "main_input_name", "input_ids")
        if isinstance(main_input, str) and main_input != "input_ids":
            raise ValueError(f"this model generates from {main_input!r}, not from text prompts: pass generate_fn=...")
        config = getattr(model, "config", None)
        encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        limit = self.max_prompt_tokens or prompt_token_limit(config, tokenizer, self.max_new_tokens, encoder_decoder=encoder_decoder)
        # Decoder-only: the end of the prompt is where the answer starts, so the start goes. An
        # encoder reads the whole prompt: it is cut where the tokenizer would cut it.
        keep_end = not encoder_decoder or getattr(tokenizer, "truncation_side", "right") == "left"
        bos_id = _first_id(getattr(tokenizer, "bos_token_id", None))
        encoded: List[List[int]] = []
        for sample in self._samples:
            ids = [int(token) for token in tokenizer(sample.text or "", add_special_tokens=sample.add_special_tokens)["input_ids"]]
            if not ids and bos_id is not None:
                ids = [bos_id]  # generate() needs a position to continue from
            if limit is not None and len(ids) > limit:
                if not self._warned_truncated:
                    self._warned_truncated = True
                    self._log(
                        "warn",
                        f"a prompt of {len(ids)} tokens was cut to its {'last' if keep_end else 'first'} {limit} to fit the model's "
                        f"context with max_new_tokens={self.max_new_tokens} (max_prompt_tokens= sets the limit); the rows keep the whole prompt",
                    )
                ids = ids[-limit:] if keep_end else ids[:limit]
            encoded.append(ids)
        pad_id = _first_id(getattr(tokenizer, "pad_token_id", None))
        if pad_id is None:
            pad_id = _first_id(getattr(tokenizer, "eos_token_id", None))
        options: Dict[str, Any] = {**self.generation_kwargs, "max_new_tokens": self.max_new_tokens}
        if pad_id is not None:
            options.setdefault("pad_token_id", pad_id)
        start_id = _first_id(getattr(getattr(model, "generation_config", None), "decoder_start_token_id", None))
        if start_id is None:
            start_id = _first_id(getattr(config, "decoder_start_token_id", None))
        with_mask = _accepts_attention_mask(model)
        device = _model_device(model)
        was_training = bool(getattr(model, "training", False))
        model.eval()
        completions: List[str] = []
        try:
            with torch.no_grad(), _whole_parameters(model):
                for first in range(0, len(encoded), self.batch_size):
                    batch_ids, batch_mask = pad_batch(encoded[first : first + self.batch_size], pad_id or 0, left=not encoder_decoder)
                    # Only what generate() takes from any text model: a tokenizer's token_type_ids
                    # (BERT-style, or 4.x fast tokenizers) are refused by models without them.
                    inputs: Dict[str, Any] = {"input_ids": torch.tensor(batch_ids, dtype=torch.long, device=device)}
                    if with_mask:
                        inputs["attention_mask"] = torch.tensor(batch_mask, dtype=torch.long, device=device)
                    output = model.generate(**inputs, **options)
                    for row in getattr(output, "sequences", output).tolist():
                        if encoder_decoder:
                            # generate() returns the decoder's sequence alone: its start token, then the
                            # answer. The prompt is not in it, so nothing else is cut.
                            answer = row[1:] if row and start_id is not None and row[0] == start_id else row
                        else:
                            answer = row[len(batch_ids[0]) :]  # every row of the batch is padded to the same width
                        completions.append(str(tokenizer.decode(answer, skip_special_tokens=True)))
        finally:
            if was_training:
                model.train()
        return completions

    # Lifecycle ----------------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the writer on first use in the main process (other ranks never start one)."""
        if self._started or self._closed:
            return
        self._started = True
        self.writer.start()
        atexit.register(self._at_exit)
        if self._install_handlers:
            self._install_sigterm()
        if not self.local_mode:
            self._log("info", f"predictions: cloud mode, trigger {self.sample_frequency}, {len(self.samples)} sample(s) per fire")

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until the spool is sent (or the server is found unreachable)."""
        return self.writer.flush(timeout) if self._started and not self._closed else True

    def _end_of_training(self) -> None:
        """Flush (bounded), report the job finished when every row is stored, print the summary.

        The writer keeps running: rows made later (``evaluate()`` after ``train()``) are sent too.
        """
        if not self._started or self._closed:
            return
        self.writer.finishing = True
        self.flush(timeout=self.exit_timeout)
        self._report_finished()
        self._summarise()

    def _report_finished(self) -> None:
        if not (self._train_ended and self.finish_job and self._started) or self.local_mode or self._client is None:
            return
        if not self.writer.sending:
            return  # a refused token cannot report anything; rotate_hint said what to do
        counters = self.counters.snapshot()
        if self._finished_at == (counters["generated"], counters["persisted"]):
            return  # nothing new since the last report (finishing twice is harmless, but noisy)
        if counters["spooled"] or self.counters.pending:
            self._print("warn", "not reporting the job finished yet: predictions are still waiting in the spool")
            return
        try:
            self._client.mutate("pod.finish", {"status": "completed"}, attempts=2)
            self._finished_at = (counters["generated"], counters["persisted"])
        except PodUnreachable as error:
            self._print("warn", f"could not report the job finished: {error}")
        except PodRejected as error:
            if error.status == 401:
                self.writer._refuse_token(error)
            else:
                self._print("warn", f"could not report the job finished: {error}")

    def close(self, *, completed: bool = False, timeout: Optional[float] = None) -> Dict[str, int]:
        """Flush, stop the writer, report ``pod.finish`` when appropriate, print the summary.

        Bounded by ``timeout`` (``exit_timeout`` by default): with a server that hangs, the rows
        not yet stored stay in the spool, and the summary says so.
        """
        if self._closed:
            return self.counters.snapshot()
        if completed:
            self._train_ended = True
        self.writer.finishing = self._train_ended
        if self._started:
            self.writer.close(self.exit_timeout if timeout is None else timeout)
            self._report_finished()
        self._closed = True
        self._summarise()
        return self.counters.snapshot()

    def _summarise(self) -> None:
        counters = self.counters.snapshot()
        if counters == self._summarised:
            return  # said already, nothing changed since
        self._summarised = counters
        self._print("info", self.summary())

    def summary(self) -> str:
        c = self.counters.snapshot()
        with self.counters.lock:
            fires = self.counters.trigger_fires
            replaced, altered, metrics_refused = self.counters.replaced, self.counters.altered, self.counters.metrics_refused
        pending = self.counters.pending
        line = (
            f"predictions summary: mode={'local' if self.local_mode else 'cloud'} trigger={self.sample_frequency} "
            f"fires={fires} generated={c['generated']} persisted={c['persisted']} spooled={c['spooled']} rejected={c['rejected']} "
            f"replaced={replaced} altered={altered} metrics_refused={metrics_refused}"
        )
        if pending:
            line += f" pending={pending}"
        if altered:
            line += f"; {altered_note(altered)}"
        if metrics_refused:
            line += f"; {metrics_refused} metric point(s) were refused by the server (reasons logged above)"
        if c["rejected"]:
            line += f"; rejected rows are in {self.spool.rejected_path} with their reasons"
        if self.local_mode:
            line += f"; missing env: {', '.join(self.missing)}"
        if c["spooled"] or pending:
            line += (
                f"; {c['spooled'] + pending} prediction(s) are in {self.spool.path}: the next run of this job uploads them, or run "
                f"JOB_TOKEN=<the job token> API_URL=<server url> {SYNC_COMMAND} {self.spool.path}"
            )
        return line

    def _at_exit(self) -> None:
        # Interpreter exit: the last rows (a late evaluate(), or a script that stops early) are sent
        # within exit_timeout or left in the spool.
        self.close(completed=self._train_ended)

    def _install_sigterm(self) -> None:
        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:
            pass  # not the main thread: atexit still flushes on a normal exit

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self._print("warn", "SIGTERM: flushing predictions before exiting")
        self.close(completed=False, timeout=min(self.exit_timeout, 20.0))
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


# --- `sync`: upload a spool later ----------------------------------------------------------------


def sync(spool_path: str, environ: Mapping[str, str], *, batch_size: int = 500, attempts: int = 5, out: Optional[TextIO] = None) -> int:
    """Upload a spool (predictions, and the metric points beside it) with the job token.

    Returns a process exit code: 0 everything stored, 1 something refused or left, 2 configuration.
    """
    out = out or sys.stdout
    env = PodEnv(environ)
    for problem in env.problems:
        print(f"configuration: {problem}", file=out)
    missing = [name for name in ("JOB_TOKEN", "API_URL") if not env.presence[name]]
    if missing:
        print(f"sync needs the environment variable(s) {', '.join(missing)} (names only; set them to the job's values)", file=out)
        return 2
    assert env.api_url is not None and env.token is not None
    if not os.path.exists(spool_path):
        # A mistyped path or an unexpanded glob must not look like success (the TypeScript sync agrees).
        print(f"sync: the spool {spool_path} does not exist", file=out)
        return 1
    spool = Spool(spool_path)
    metrics = spool.metrics()
    found = spool.open()
    metric_count = metrics.open()
    if spool.torn_bytes:
        print(f"  the last line of {spool.path} was cut short by a killed process and was dropped", file=out)
    if spool.bad_lines:
        print(f"  {spool.bad_lines} line(s) of {spool.path} were not JSON and were skipped", file=out)
    if not found and not metric_count:
        print(f"nothing to upload: {spool.path} is empty", file=out)
        return 0
    client = PodClient(env.api_url, env.token, attempts=attempts)
    result = send_entries(client, spool.pending(), batch_size=batch_size)
    # What the server holds (inserted, duplicate or replaced) leaves the spool; rejected rows are
    # kept aside with their reason so nothing disappears silently.
    spool.ack(result.stored)
    spool.reject(result.rejected)
    print(
        f"sync: {found} row(s) read, inserted={result.inserted} duplicates={result.duplicates} replaced={result.replaced} "
        f"altered={result.altered} rejected={len(result.rejected)} unsent={len(result.unsent)}",
        file=out,
    )
    if result.altered:
        print(f"  {altered_note(result.altered)}", file=out)
    for _, row, reason in result.rejected[:5]:
        print(f"  rejected step={row.get('step')} sampleIndex={row.get('sampleIndex')}: {reason}", file=out)
    if result.rejected:
        print(f"  rejected rows were written to {spool.rejected_path}", file=out)
    refused = result.refused
    unsent_metrics = 0
    if metric_count and refused is None and result.unreachable is None:
        sent = send_entries(client, metrics.pending(), procedure="pod.writeMetrics", key="metrics", batch_size=batch_size)
        metrics.ack(sent.stored)
        metrics.reject(sent.rejected)
        refused = sent.refused
        unsent_metrics = len(sent.unsent)
        print(f"sync: {metric_count} metric point(s) read, stored={len(sent.stored)} refused={len(sent.rejected)} unsent={unsent_metrics}", file=out)
    if refused is not None:
        print(f"  the server refused the token (HTTP 401: {refused.message})", file=out)
        print(f"  {rotate_hint(refused.reason, spool.path, spool.count())}", file=out)
    elif result.unsent:
        print(f"  server unreachable ({result.unreachable}); {len(result.unsent)} row(s) kept in {spool.path}, run sync again", file=out)
    return 0 if not result.rejected and not result.unsent and not unsent_metrics and refused is None else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="predictions_callback.py", description="Training predictions for Hugging Face Trainer.")
    commands = parser.add_subparsers(dest="command", required=True)
    sync_parser = commands.add_parser("sync", help="upload a spool file (env JOB_TOKEN and API_URL)")
    sync_parser.add_argument("--spool", required=True, help="the JSONL spool written by the callback")
    sync_parser.add_argument("--batch-size", type=int, default=500)
    options = parser.parse_args(argv)
    return sync(options.spool, os.environ, batch_size=options.batch_size)


def sync_main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``predictions-sync`` console command: ``predictions-sync --spool FILE`` uploads a spool
    a pod kept, with JOB_TOKEN and API_URL from the environment; exit 0 when every row is stored."""
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) or "predictions-sync",
        description="Upload a spool of training predictions a pod kept (env JOB_TOKEN and API_URL).",
    )
    parser.add_argument("--spool", required=True, help="the JSONL spool written by the callback or the trainer")
    parser.add_argument("--batch-size", type=int, default=500)
    options = parser.parse_args(argv)
    return sync(options.spool, os.environ, batch_size=options.batch_size)


if __name__ == "__main__":
    sys.exit(main())
