"""Mirroring: decide which requests go to the candidate, send them in the background, and turn each
finished exchange into a stored pair.

The user's request never waits on anything here. `Mirror.offer()` is synchronous and O(1): it decides,
and either puts a job on a bounded queue or drops it (counted). A fixed pool of workers (the cap on mirrors
in flight) sends the candidate call, and sometimes a second primary call (the secondary, for the noise
floor), then waits for the primary's answer, which the proxy hands over when the user's response ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from shadow.breaker import CircuitBreaker
from shadow.budget import MirrorBudget
from shadow.metrics import SidecarMetrics
from shadow.pairs import Pair, SideOutput, prompt_of, utc_now
from shadow.redact import Redactor
from shadow.sampling import StickySampler, bucket_of, forced_decision, hash_user_key, header_value, user_key
from shadow.settings import Settings
from shadow.upstream import call_and_capture, forward_request_headers, join_url

log = logging.getLogger(__name__)

MIRRORED_ROUTES = {"/chat/completions": "chat", "/completions": "completions"}
"""Paths after the `/v1` base; every other path is passed through to the primary only."""


class PairSink(Protocol):
    def submit(self, pair: Pair) -> None: ...


@dataclass(frozen=True, slots=True)
class PrimaryOutcome:
    side: SideOutput
    user_cancelled: bool


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
        self._candidate_timeout = aiohttp.ClientTimeout(total=settings.candidate_timeout_s)

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._worker(), name=f"shadow-mirror-{i}")
            for i in range(self.settings.max_mirrors_in_flight)
        ]

    async def drain(self, timeout_s: float) -> None:
        """Stop taking new mirrors; let queued and running ones finish within the bound, then cancel.

        A mirror cancelled here never completed, so no pair is lost by dropping it; it is counted.
        """
        self._accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        while not self._queue.empty():
            job = self._queue.get_nowait()
            self._queue.task_done()
            self._drop("shutdown")
            job.primary.cancel()
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
                list(forward_request_headers(headers).items())
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
            except asyncio.CancelledError:
                self._drop("shutdown")
                raise
            except Exception:
                log.exception("mirror failed; its pair is not stored")
                self._drop("internal_error")
            finally:
                self.metrics.mirrors_in_flight.dec()
                self._queue.task_done()

    async def _complete(self, job: MirrorJob) -> None:
        candidate_body = candidate_request_body(job.body, self.settings)
        path = next(p for p, r in MIRRORED_ROUTES.items() if r == job.route)
        calls = [
            call_and_capture(
                self.session,
                join_url(self.settings.candidate, path),
                body=json.dumps(candidate_body, ensure_ascii=False).encode(),
                headers=job.candidate_headers,
                route=job.route,
                timeout=self._candidate_timeout,
                requested_model=candidate_body.get("model"),
            )
        ]
        if job.secondary_headers is not None:
            calls.append(
                call_and_capture(
                    self.session,
                    join_url(self.settings.primary, path),
                    body=json.dumps(job.body, ensure_ascii=False).encode(),
                    headers=job.secondary_headers,
                    route=job.route,
                    timeout=self._candidate_timeout,
                    requested_model=job.body.get("model"),
                )
            )
        results = await asyncio.gather(*calls)
        candidate = results[0]
        secondary = results[1] if len(results) > 1 else None
        self._account_candidate(candidate)
        outcome = await job.primary
        self.sink.submit(self._build_pair(job, outcome, candidate, secondary))
        self.metrics.pairs_stored.inc()

    def _account_candidate(self, candidate: SideOutput) -> None:
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
        usage = candidate.usage or {}
        tokens = usage.get("total_tokens") or (
            usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
        )
        if isinstance(tokens, int) and tokens > 0:
            self.budget.record_tokens(tokens)

    def _build_pair(
        self, job: MirrorJob, outcome: PrimaryOutcome, candidate: SideOutput, secondary: SideOutput | None
    ) -> Pair:
        redact = self.redactor.redact
        request = self.redactor.redact_obj(job.body)
        return Pair(
            experiment=self.settings.experiment,
            request=request,
            prompt=prompt_of(request),
            route=job.route,
            stream=job.stream,
            baseline=_redacted_side(outcome.side, redact),
            candidate=_redacted_side(candidate, redact),
            secondary=_redacted_side(secondary, redact) if secondary else None,
            user_key_hash=job.user_key_hash,
            user_bucket=job.user_bucket,
            segment=job.segment,
            user_cancelled=outcome.user_cancelled,
            created_at=job.created_at,
        )


def candidate_request_body(body: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The user's body with the candidate's model name and any configured decoding overrides."""
    candidate_body = {**body, **settings.candidate_overrides()}
    if settings.candidate_model:
        candidate_body["model"] = settings.candidate_model
    return candidate_body


def _redacted_side(side: SideOutput, redact: Any) -> SideOutput:
    return SideOutput(
        text=redact(side.text) if side.text else side.text,
        status=side.status,
        latency_ms=side.latency_ms,
        ttft_ms=side.ttft_ms,
        finish_reason=side.finish_reason,
        usage=side.usage,
        error=redact(side.error) if side.error else side.error,
        model=side.model,
        started_at=side.started_at,
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
