"""One frozen settings object, built from defaults < TOML file < `SHADOW_*` environment < command-line flags.

Every component receives the `Settings` it needs explicitly; nothing reads the environment on its own.
A TOML file may use flat keys (`sample_rate = 0.2`) or group them in tables (`[mirror] sample_rate = 0.2`);
table names are only for the reader, keys are unique across the file.
"""

from __future__ import annotations

import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from shadow.core.errors import UserError

ENV_PREFIX = "SHADOW_"


class SettingsError(UserError, ValueError):
    """A setting with a bad value; the message names the setting and what it accepts."""


def _opt(default: Any, help_text: str, **extra: Any) -> Any:
    if isinstance(default, (list, dict, tuple)):
        return field(default_factory=lambda: default, metadata={"help": help_text, **extra})
    return field(default=default, metadata={"help": help_text, **extra})


@dataclass(frozen=True, slots=True)
class Settings:
    # --- upstreams ---------------------------------------------------------------------------------------
    primary: str = _opt("", "OpenAI base URL of the primary (ends in /v1); every request goes there.")
    candidate: str = _opt(
        "", "OpenAI base URL of the candidate (ends in /v1); sampled requests are mirrored."
    )
    candidate_model: str = _opt("", "Model name written into mirrored requests; empty keeps the user's.")
    candidate_params: str = _opt(
        "",
        "JSON object merged into every candidate request, e.g. '{\"temperature\": 0}' to compare decoding "
        "settings of the same model; empty sends the user's parameters unchanged.",
    )
    candidate_api_key: str = _opt(
        "", "API key sent to the candidate as a bearer token (also SHADOW_CANDIDATE_API_KEY).", secret=True
    )
    forward_user_auth_to_candidate: bool = _opt(
        False, "Send the user's own Authorization header to the candidate. Off: it never leaves for it."
    )
    primary_connect_timeout_s: float = _opt(10.0, "Connect timeout towards the primary.")
    primary_read_timeout_s: float = _opt(600.0, "Longest silence between two bytes from the primary.")
    capture_max_bytes: int = _opt(
        4 * 1024 * 1024,
        "Bound on what is copied for a pair: larger request bodies are forwarded unmirrored (counted), and an "
        "answer past it is captured truncated and marked so. The user always gets every byte.",
    )
    max_header_bytes: int = _opt(
        64 * 1024, "Longest request or response header line passed through (Envoy's default is 60 KiB)."
    )
    max_headers: int = _opt(256, "Most request or response headers passed through.")
    capture_worker_nice: int = _opt(
        10,
        "CPU priority of the capture worker, as a nice increment (0-19): when they compete for a core, the "
        "process serving users wins and the worker catches up later (or drops, counted).",
    )
    capture_channel_bytes: int = _opt(
        32 * 1024 * 1024,
        "Bytes waiting for the capture worker at most; past it a mirror is dropped and counted, never awaited.",
    )

    # --- listeners ---------------------------------------------------------------------------------------
    listen: str = _opt("127.0.0.1:8080", "HOST:PORT for the chat traffic.")
    admin_listen: str = _opt("127.0.0.1:9090", "HOST:PORT for /healthz, /metrics and the gate API.")
    admin_token: str = _opt(
        "",
        "Bearer token for admin endpoints; required when the admin listener is not on loopback.",
        secret=True,
    )
    experiment: str = _opt("default", "Experiment name stored with every pair.")
    gate_policy: str = _opt(
        "", "Gate policy TOML for the admin gate API; empty uses the documented defaults."
    )

    # --- mirroring ---------------------------------------------------------------------------------------
    sample_rate: float = _opt(0.1, "Share of users (0-1) whose requests are mirrored; sticky per user key.")
    user_key_header: str = _opt("X-User-Id", "Header holding the user key when the body has no `user`.")
    user_key_secret: str = _opt(
        "", "Secret for HMAC-SHA256 of stored user keys; without it a plain SHA-256 is stored.", secret=True
    )
    force_header: str = _opt("X-Shadow-Mirror", "Request header forcing mirroring: 'on'/'1' or 'off'/'0'.")
    segment_headers: tuple[str, ...] = _opt(
        (), "Request headers copied as segment tags, as HEADER or HEADER=tag (e.g. X-Region=region)."
    )
    secondary_rate: float = _opt(
        0.1, "Share of mirrored requests also sent again to the primary (noise floor)."
    )
    max_mirrors_in_flight: int = _opt(16, "Candidate calls running at once.")
    mirror_queue_size: int = _opt(256, "Mirrors waiting for a slot; past it a mirror is dropped and counted.")
    candidate_timeout_s: float = _opt(120.0, "Total time a mirrored call may take.")
    breaker_failures: int = _opt(5, "Consecutive candidate failures that open the circuit breaker.")
    breaker_cooldown_s: float = _opt(30.0, "Seconds the breaker stays open before a probe is let through.")
    budget_requests_per_s: float = _opt(0.0, "Mirrored requests per second at most; 0 means no cap.")
    budget_candidate_tokens_per_hour: int = _opt(0, "Candidate tokens per hour at most; 0 means no cap.")
    mirror_window: str = _opt(
        "", "Mirror only inside this UTC time window, 'HH:MM-HH:MM' (may wrap midnight); empty = always."
    )
    redact: tuple[str, ...] = _opt(
        ("email", "phone", "cn_id", "bank_card"),
        "Kinds of personal data replaced by typed placeholders before storing; empty stores text as is.",
    )
    store_binary_parts: bool = _opt(
        False,
        "Keep images, audio and files of stored requests as sent (base64); by default each becomes a typed "
        "placeholder with its media type, size and SHA-256.",
    )
    drain_timeout_s: float = _opt(
        20.0,
        "On SIGTERM, the whole shutdown's bound: requests in flight, mirrors and the final store flush. Keep it "
        "a few seconds under the pod's grace period (Kubernetes: 30 s).",
    )

    # --- store -------------------------------------------------------------------------------------------
    db: str = _opt(
        "sqlite:///shadow.db", "SQLAlchemy URL of the pair store (sqlite:///path or postgresql://)."
    )
    spool_path: str = _opt(
        "",
        "Append-only spool used while the database is unavailable; empty: next to the db or ./shadow.spool.",
    )
    store_batch_size: int = _opt(64, "Pairs written per transaction.")
    store_flush_interval_s: float = _opt(
        0.5, "Longest a finished pair waits before it is written or spooled."
    )
    score_claim_ttl_s: float = _opt(
        600.0,
        "Seconds a `shadow score --db` claim on a chunk of pairs lasts unless renewed (a third of it between "
        "renewals); a scorer that dies leaves its pairs to the others after this long.",
    )
    log_level: str = _opt("INFO", "Logging level.")

    # ----------------------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        for name in ("sample_rate", "secondary_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SettingsError(f"{name} must be between 0 and 1, got {value}")
        for name in (
            "max_mirrors_in_flight",
            "mirror_queue_size",
            "store_batch_size",
            "capture_max_bytes",
            "max_header_bytes",
            "max_headers",
            "capture_channel_bytes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("listen", "admin_listen"):
            split_host_port(getattr(self, name), name)
        if not 0 <= self.capture_worker_nice <= 19:
            raise SettingsError(
                f"capture_worker_nice must be between 0 and 19, got {self.capture_worker_nice}"
            )
        if self.drain_timeout_s <= 0:
            raise SettingsError(f"drain_timeout_s must be positive, got {self.drain_timeout_s}")
        if not 1.0 <= self.score_claim_ttl_s < float("inf"):
            raise SettingsError(f"score_claim_ttl_s must be at least 1 second, got {self.score_claim_ttl_s}")
        self.candidate_overrides()  # validates

    def candidate_overrides(self) -> dict[str, Any]:
        if not self.candidate_params.strip():
            return {}
        try:
            value = json.loads(self.candidate_params)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"candidate_params must be a JSON object: {exc.msg} at column {exc.colno}"
            ) from exc
        if not isinstance(value, dict):
            raise SettingsError("candidate_params must be a JSON object, e.g. '{\"temperature\": 0}'")
        return value

    @property
    def shutdown_reserve_s(self) -> float:
        """The end of `drain_timeout_s` kept for mirrors and the final store flush: requests still in
        flight when it starts are cut off (they never completed, so no pair of theirs is lost)."""
        return min(3.0, self.drain_timeout_s * 0.25)

    @property
    def resolved_spool_path(self) -> Path:
        if self.spool_path:
            return Path(self.spool_path)
        if self.db.startswith("sqlite:///") and self.db != "sqlite:///:memory:":
            return Path(self.db.removeprefix("sqlite:///") + ".spool")
        return Path("shadow.spool")

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **coerce_values(values, source="override"))


def split_host_port(value: str, name: str = "address") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise SettingsError(f"{name} must be HOST:PORT, got {value!r}")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_token_required(settings: Settings) -> bool:
    """Whether admin endpoints need the bearer token; refuses an open admin listener without one."""
    host, _port = split_host_port(settings.admin_listen, "admin_listen")
    required = not is_loopback(host)
    if required and not settings.admin_token:
        raise SettingsError(
            f"the admin listener {settings.admin_listen} is not on loopback, so it needs a bearer token: "
            "set admin_token (or SHADOW_ADMIN_TOKEN)"
        )
    return required


def _types() -> dict[str, Any]:
    return get_type_hints(Settings)


def coerce_values(values: Mapping[str, Any], *, source: str) -> dict[str, Any]:
    types = _types()
    out: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in types:
            known = ", ".join(sorted(types))
            raise SettingsError(f"unknown setting {key!r} in {source}; known settings: {known}")
        out[key] = _coerce(key, raw, types[key], source)
    return out


def _coerce(key: str, raw: Any, target: Any, source: str) -> Any:
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if target is int:
            return int(raw)
        if target is float:
            return float(raw)
        if target is str:
            return str(raw)
        if target == tuple[str, ...]:
            if isinstance(raw, str):
                return tuple(item.strip() for item in raw.split(",") if item.strip())
            return tuple(str(item) for item in raw)
    except (TypeError, ValueError) as exc:
        kinds = {bool: "true or false", int: "a whole number", float: "a number"}
        raise SettingsError(
            f"setting {key!r} from {source}: cannot use {raw!r}; give {kinds.get(target, 'a list of names')}"
        ) from exc
    raise SettingsError(f"setting {key!r}: unsupported type {target}")


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        items = value.items() if isinstance(value, dict) else [(key, value)]
        for inner_key, inner_value in items:
            if inner_key in flat:
                raise SettingsError(f"config file {path}: setting {inner_key!r} is given twice")
            flat[inner_key] = inner_value
    return flat


def read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    names = {f.name for f in fields(Settings)}
    found = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key.removeprefix(ENV_PREFIX).lower()
            if name in names:
                found[name] = value
    return found


def load_settings(
    *,
    config_path: str | os.PathLike[str] | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the sources in increasing precedence. Flags whose value is None were not given."""
    values: dict[str, Any] = {}
    if config_path:
        values.update(coerce_values(read_toml(config_path), source=str(config_path)))
    values.update(
        coerce_values(read_environment(os.environ if environ is None else environ), source="environment")
    )
    if flags:
        values.update(coerce_values({k: v for k, v in flags.items() if v is not None}, source="command line"))
    return Settings(**values)
