"""The admin listener of a running sidecar: health, metrics, the gate API, and its bearer token."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from shadow.core.settings import Settings, SettingsError, admin_token_required
from tests.harness import capture_stack


async def test_health_metrics_and_gate_on_a_running_sidecar(tmp_path):
    async with capture_stack(tmp_path) as stack, aiohttp.ClientSession() as http:
        async with http.post(
            f"{stack.url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "你好"}]},
        ) as resp:
            assert resp.status == 200
        await stack.wait_for_pairs(1)
        admin = stack.sidecar.admin_url
        async with http.get(f"{admin}/healthz") as resp:
            health = await resp.json()
        assert health["status"] == "ok" and health["db_available"] is True and health["breaker"] == "closed"
        metrics = await stack.wait_for_metric(
            'shadow_requests_total{route="/chat/completions",status_class="2xx"} 1.0'
        )
        assert 'shadow_mirrored_total{route="chat"} 1.0' in metrics
        assert 'shadow_upstream_latency_seconds_count{side="candidate"} 1.0' in metrics
        # Pairs exist but none is scored yet: the gate cannot judge, and says so with HTTP 200 (Argo-safe).
        async with http.get(f"{admin}/api/v1/gate", params={"experiment": "default"}) as resp:
            assert resp.status == 200
            gate = (await resp.json())["data"]
        assert gate["verdict"] == "inconclusive"
        assert "shadow_gate_score" in await (await http.get(f"{admin}/metrics")).text()


def test_admin_off_loopback_needs_a_token():
    assert admin_token_required(Settings(admin_listen="127.0.0.1:9090")) is False
    with pytest.raises(SettingsError, match="needs a bearer token"):
        admin_token_required(Settings(admin_listen="0.0.0.0:9090"))
    assert admin_token_required(Settings(admin_listen="0.0.0.0:9090", admin_token="t")) is True


async def test_token_is_enforced_when_listening_off_loopback(tmp_path):
    async with capture_stack(tmp_path, admin_listen="0.0.0.0:0", admin_token="s3cret") as stack:
        port = URL(stack.sidecar.admin_url).port
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200  # probes carry no token
            async with http.get(f"{base}/metrics") as resp:
                assert resp.status == 401
            async with http.get(f"{base}/metrics", headers={"Authorization": "Bearer s3cret"}) as resp:
                assert resp.status == 200
