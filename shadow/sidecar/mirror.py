"""Mirroring, in the capture worker: decide which requests go to the candidate, send them, and turn each
finished exchange into a stored pair.

`Mirror.offer()` is synchronous: it decides, and either puts a job on a bounded queue or drops it
(counted). A fixed pool of tasks (the cap on mirrors in flight) sends the candidate call, and sometimes a
second primary call (the secondary, for the noise floor), then waits for the primary's answer, which the
worker hands over when the serving process reports the user's response ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import aiohttp

from shadow.core.pairs import Pair, SideOutput, utc_now
from shadow.core.prompts import binary_placeholders, prompt_of
from shadow.core.settings import Settings
from shadow.sidecar.breaker import CircuitBreaker
from shadow.sidecar.budget import MirrorBudget
from shadow.sidecar.http_headers import forward_request_headers, join_url, split_credentials
from shadow.sidecar.metrics import SidecarMetrics
from shadow.sidecar.redact import Redactor
from shadow.sidecar.routes import MIRRORED_ROUTES
from shadow.sidecar.sampling import (
    StickySampler,
    bucket_of,
    forced_decision,
    hash_user_key,
    header_value,
    user_key,
)
from shadow.sidecar.token_count import candidate_tokens
from shadow.sidecar.upstream import call_and_capture

log = logging.getLogger(__name__)


class PairSink(Protocol):
    def submit(self, pair: Pair) -> None: ...


@dataclass(frozen=True, slots=True)
class PrimaryOutcome:
    side: SideOutput | None
    """None when the exchange did not complete for the user (or its copy was lost): no pair is stored."""
    user_cancelled: bool = False
    notes: tuple[str, ...] = ()
    dropped: str | None = None
    """Why there is no side: the reason counted in `shadow_mirror_dropped`."""


@dataclass(slots=True)
class MirrorJob:
    route: str
    body: dict[str, Any]
    stream: bool
    candidate_headers: list[tuple[str, str]]
    secondary_headers: list[tuple[str, str]] | None
    user_key_hash: str
    user_bucket: int
    segment: dict[str, str]
    primary: asyncio.Future[PrimaryOutcome]
    created_at: Any = field(default_factory=utc_now)

    def finish_primary(self, outcome: PrimaryOutcome) -> None:
        if not self.primary.done():
            self.primary.set_result(outcome)


class Mirror:
    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        sink: PairSink,
        metrics: SidecarMetrics,
        *,
        breaker: CircuitBreaker | None = None,
        budget: MirrorBudget | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.sink = sink
        self.metrics = metrics
        self.sampler = StickySampler(settings.sample_rate)
        self.breaker = breaker or CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.budget = budget or MirrorBudget(settings)
        self.redactor = Redactor(settings.redact)
        self.segment_headers = _parse_segment_headers(settings.segment_headers)
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=settings.mirror_queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._accepting = False
        self._stopping = False
        self._candidate_url, self._candidate_auth = split_credentials(settings.candidate)
        self._primary_url, self._primary_auth = split_credentials(settings.primary)
        self._candidate_timeout = aiohttp.ClientTimeout(total=settings.candidate_timeout_s)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._worker(), name=f"shadow-mirror-{i}")
            for i in range(self.settings.max_mirrors_in_flight)
        ]

    async def drain(self, timeout_s: float) -> None:
        """Stop taking new mirrors; let queued and running ones finish within the bound, then cut them off.

        A mirror cut off after its user exchange completed is still stored, with the candidate (or the
        secondary) marked as cut off by the shutdown; one whose user exchange never completed is dropped.
        """
        self._accepting = False
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            self._queue.task_done()
            outcome = job.primary.result() if job.primary.done() and not job.primary.cancelled() else None
            if outcome is not None and outcome.side is not None:
                never_sent = SideOutput(error="not sent: the sidecar shut down while this mirror was queued")
                secondary = never_sent if job.secondary_headers is not None else None
                self._store(job, outcome, never_sent, secondary, [])
            else:
                self._drop("shutdown")
        self._workers = []

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # --- the request path --------------------------------------------------------------------------------

    def offer(
        self, path_after_v1: str, raw_body: bytes, headers: Mapping[str, str], client_address: str | None
    ) -> MirrorJob | None:
        """Decide whether this request is mirrored and, if so, queue its job. Never raises, never waits."""
        try:
            return self._offer(path_after_v1, raw_body, headers, client_address)
        except Exception:  # the user's request must not notice a bug of ours
            log.exception("mirror decision failed; the request is served without a mirror")
            return None

    def _offer(
        self, path_after_v1: str, raw_body: bytes, headers: Mapping[str, str], client_address: str | None
    ) -> MirrorJob | None:
        route = MIRRORED_ROUTES.get(path_after_v1)
        if route is None or not self._accepting or not self.settings.candidate:
            return None
        try:
            body = json.loads(raw_body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # the primary decides what to make of it
        if not isinstance(body, dict):
            return None
        key, _source = user_key(body, headers, self.settings.user_key_header, client_address)
        forced = forced_decision(headers, self.settings.force_header)
        if forced is False or (forced is None and not self.sampler.decide(key)):
            return None
        if not self.breaker.allow():
            self._drop("breaker_open")
            return None
        skip_reason = self.budget.check()
        if skip_reason:
            self._drop(skip_reason)
            return None
        job = MirrorJob(
            route=route,
            body=body,
            stream=bool(body.get("stream")),
            candidate_headers=self._candidate_headers(headers),
            secondary_headers=(
                _secondary_headers(headers, self._primary_auth)
                if self._rng.random() < self.settings.secondary_rate
                else None
            ),
            user_key_hash=hash_user_key(key, self.settings.user_key_secret),
            user_bucket=bucket_of(key),
            segment=self._segment(headers),
            primary=asyncio.get_running_loop().create_future(),
        )
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._drop("queue_full")
            return None
        self.metrics.queue_depth.set(self._queue.qsize())
        self.metrics.mirrored.labels(route=route).inc()
        return job

    def _candidate_headers(self, user_headers: Mapping[str, str]) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", "application/json"),
            ("Accept", header_value(user_headers, "Accept") or "*/*"),
        ]
        if self.settings.forward_user_auth_to_candidate:
            user_auth = header_value(user_headers, "Authorization")
            if user_auth:
                headers.append(("Authorization", user_auth))
        elif self.settings.candidate_api_key:
            headers.append(("Authorization", f"Bearer {self.settings.candidate_api_key}"))
        if self._candidate_auth is not None and not any(k == "Authorization" for k, _ in headers):
            headers.append(("Authorization", self._candidate_auth))
        return headers

    def _segment(self, headers: Mapping[str, str]) -> dict[str, str]:
        segment = {}
        for header, tag in self.segment_headers:
            value = header_value(headers, header)
            if value:
                segment[tag] = self.redactor.redact(value.strip()[:200])
        return segment

    def _drop(self, reason: str) -> None:
        self.metrics.dropped.labels(reason=reason).inc()

    # --- the background ----------------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job = await self._queue.get()
            self.metrics.queue_depth.set(self._queue.qsize())
            self.metrics.mirrors_in_flight.inc()
            try:
                await self._complete(job)
            except Exception:  # not CancelledError: a shutdown's cut-off is _complete's to handle
                log.exception("mirror failed; its pair is not stored")
                self._drop("internal_error")
            finally:
                self.metrics.mirrors_in_flight.dec()
                self._queue.task_done()

    async def _complete(self, job: MirrorJob) -> None:
        candidate_body = candidate_request_body(job.body, self.settings, job.route)
        path = next(p for p, r in MIRRORED_ROUTES.items() if r == job.route)
        notes: list[str] = []

        def call(base_url: str, body: dict[str, Any], headers: list[tuple[str, str]], side: str) -> Any:
            return asyncio.ensure_future(
                call_and_capture(
                    self.session,
                    join_url(base_url, path),
                    body=json.dumps(body, ensure_ascii=False).encode(),
                    headers=headers,
                    route=job.route,
                    timeout=self._candidate_timeout,
                    requested_model=body.get("model"),
                    limit_bytes=self.settings.capture_max_bytes,
                    notes=notes,
                    label=side,
                )
            )

        calls = {"candidate": call(self._candidate_url, candidate_body, job.candidate_headers, "candidate")}
        if job.secondary_headers is not None:
            calls["secondary"] = call(self._primary_url, job.body, job.secondary_headers, "secondary")
        started = time.monotonic()
        try:
            await asyncio.gather(*calls.values())
            outcome = await job.primary
        except asyncio.CancelledError:
            # Shutdown: an exchange the user saw complete is still stored; its unfinished calls say so.
            for call in calls.values():
                call.cancel()
            outcome = job.primary.result() if job.primary.done() and not job.primary.cancelled() else None
            if self._stopping and outcome is not None and outcome.side is not None:
                waited = time.monotonic() - started
                sides = {
                    name: call.result() if call.done() and not call.cancelled() else _cut_off(waited)
                    for name, call in calls.items()
                }
                self._store(job, outcome, sides["candidate"], sides.get("secondary"), notes)
            else:
                self._drop("shutdown")
            raise
        candidate = calls["candidate"].result()
        secondary = calls["secondary"].result() if "secondary" in calls else None
        self._account_candidate(candidate, candidate_body)
        if outcome.side is None:
            self._drop(outcome.dropped or "incomplete")
            return
        self._store(job, outcome, candidate, secondary, notes)

    def _store(
        self,
        job: MirrorJob,
        outcome: PrimaryOutcome,
        candidate: SideOutput,
        secondary: SideOutput | None,
        notes: list[str],
    ) -> None:
        self.sink.submit(self._build_pair(job, outcome, candidate, secondary, [*outcome.notes, *notes]))
        self.metrics.pairs_stored.inc()

    def _account_candidate(self, candidate: SideOutput, request: dict[str, Any]) -> None:
        if candidate.latency_ms is not None:
            self.metrics.latency.labels(side="candidate").observe(candidate.latency_ms / 1000)
        if candidate.ttft_ms is not None:
            self.metrics.time_to_first_byte.labels(side="candidate").observe(candidate.ttft_ms / 1000)
        failed = candidate.status is None or candidate.status >= 500
        if failed or candidate.error:
            kind = "transport" if candidate.status is None else f"http_{candidate.status // 100}xx"
            if candidate.status is not None and candidate.status < 400:
                kind = "bad_response"
            self.metrics.candidate_errors.labels(kind=kind).inc()
        if failed:
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        self.metrics.breaker_state.set(self.breaker.state.gauge_value)
        tokens = candidate_tokens(candidate.usage, request, candidate)
        if tokens > 0:
            self.budget.record_tokens(tokens)

    def _build_pair(
        self,
        job: MirrorJob,
        outcome: PrimaryOutcome,
        candidate: SideOutput,
        secondary: SideOutput | None,
        notes: list[str],
    ) -> Pair:
        redact = self.redactor.redact
        stored = job.body if self.settings.store_binary_parts else binary_placeholders(job.body)
        request = self.redactor.redact_obj(stored)
        return Pair(
            experiment=self.settings.experiment,
            request=request,
            prompt=prompt_of(request),
            route=job.route,
            stream=job.stream,
            baseline=_redacted_side(outcome.side or SideOutput(), redact),
            candidate=_redacted_side(candidate, redact),
            secondary=_redacted_side(secondary, redact) if secondary else None,
            user_key_hash=job.user_key_hash,
            user_bucket=job.user_bucket,
            segment=job.segment,
            user_cancelled=outcome.user_cancelled,
            created_at=job.created_at,
            capture_notes=notes,
        )


def _secondary_headers(user_headers: Mapping[str, str], primary_auth: str | None) -> list[tuple[str, str]]:
    """The user's headers for a second call to the primary. We send the body as decoded JSON, so the user's
    `Content-Encoding` (a gzip body) no longer describes it."""
    headers = [
        (k, v) for k, v in forward_request_headers(user_headers).items() if k.lower() != "content-encoding"
    ]
    if primary_auth is not None and not any(k.lower() == "authorization" for k, _ in headers):
        headers.append(("Authorization", primary_auth))
    return headers


def candidate_request_body(body: dict[str, Any], settings: Settings, route: str) -> dict[str, Any]:
    """The user's body with the candidate's model name and any configured decoding overrides.

    A streamed chat or completions request also asks for usage (`stream_options.include_usage`): this is
    our request, not the user's, and without usage a streamed candidate would escape the token budget.
    The Responses API reports usage in `response.completed` unasked.
    """
    candidate_body = {**body, **settings.candidate_overrides()}
    if settings.candidate_model:
        candidate_body["model"] = settings.candidate_model
    if route in ("chat", "completions") and candidate_body.get("stream") is True:
        options = candidate_body.get("stream_options")
        options = dict(options) if isinstance(options, dict) else {}
        options["include_usage"] = True
        candidate_body["stream_options"] = options
    return candidate_body


def _cut_off(waited_s: float) -> SideOutput:
    return SideOutput(error=f"cut off by the sidecar's shutdown after {waited_s:.1f} s without an answer")


def _redacted_side(side: SideOutput, redact: Any) -> SideOutput:
    """Personal data out of every text the side carries: its answer, error, tool-call arguments, refusal,
    reasoning and the other choices (both sides are redacted alike, so comparisons still hold)."""

    def text(value: str | None) -> str | None:
        return redact(value) if value else value

    def calls(values: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if not values:
            return values
        return [{**call, "arguments": text(call.get("arguments"))} for call in values]

    return replace(
        side,
        text=text(side.text),
        error=text(side.error),
        tool_calls=calls(side.tool_calls),
        refusal=text(side.refusal),
        reasoning=text(side.reasoning),
        choices=[
            {
                **choice,
                "text": text(choice.get("text")),
                "tool_calls": calls(choice.get("tool_calls")),
                "refusal": text(choice.get("refusal")),
                "reasoning": text(choice.get("reasoning")),
            }
            for choice in side.choices
        ]
        if side.choices
        else side.choices,
    )


def _parse_segment_headers(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    """`X-Region=region` → (X-Region, region); a bare `X-App-Version` → (X-App-Version, app_version)."""
    parsed = []
    for spec in specs:
        header, _, tag = spec.partition("=")
        header = header.strip()
        tag = tag.strip() or header.lower().removeprefix("x-").replace("-", "_")
        parsed.append((header, tag))
    return parsed
