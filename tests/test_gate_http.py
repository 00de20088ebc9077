"""The gate on the admin listener: real HTTP answers, Argo's conditions evaluated on them, Flagger, auth."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from shadow.core.settings import Settings, admin_token_required
from shadow.gate import load_policy
from shadow.gate.http import add_gate_routes
from shadow.sidecar.admin import create_admin_app
from shadow.sidecar.metrics import SidecarMetrics
from tests.gate_simulation import build_pool, simulate_records

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TOKEN = "s3cret-token"


def argo_metric() -> dict[str, Any]:
    template = yaml.safe_load((DEPLOY / "argo" / "analysis-template.yaml").read_text())
    assert template["kind"] == "AnalysisTemplate"
    (metric,) = template["spec"]["metrics"]
    return metric


def evaluate_condition(expression: str, result: dict[str, Any]) -> bool:
    """A tiny safe evaluator for Argo's expr conditions: `result.a == "x"`, `!=`, `and`, `or`, `not`."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Attribute):
            return value(node.value).get(node.attr) if isinstance(value(node.value), dict) else None
        if isinstance(node, ast.Name) and node.id == "result":
            return result
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, right = value(node.left), value(node.comparators[0])
            if isinstance(node.ops[0], ast.Eq):
                return left == right
            if isinstance(node.ops[0], ast.NotEq):
                return left != right
        if isinstance(node, ast.BoolOp):
            values = [value(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not value(node.operand)
        raise ValueError(f"unsupported expression: {ast.dump(node)}")

    python = expression.replace("&&", " and ").replace("||", " or ")
    return bool(value(ast.parse(python, mode="eval").body))


def json_path(document: dict[str, Any], path: str) -> Any:
    assert path.startswith("{$.") and path.endswith("}")
    for key in path[3:-1].split("."):
        document = document[key]
    return document


@pytest.fixture(scope="module")
def experiments() -> dict[str, list[dict[str, Any]]]:
    pool = build_pool(24)
    found = {
        "good": simulate_records("identical", 1200, 7, pool=pool),
        "broken": simulate_records("all_error", 200, 7, pool=pool),
        "young": simulate_records("identical", 20, 7, pool=pool),
    }
    for name, records in found.items():
        for record in records:
            record["experiment"] = name
    return found


@pytest.fixture
async def admin(aiohttp_client, experiments):
    settings = Settings().with_overrides(admin_listen="0.0.0.0:9090", admin_token=TOKEN)
    metrics = SidecarMetrics.create()
    app = create_admin_app(settings, metrics, health=lambda: {})

    async def load(experiment: str) -> list[dict[str, Any]]:
        if experiment == "down":
            raise ConnectionError("database is unreachable")
        return experiments.get(experiment, [])

    add_gate_routes(
        app,
        load_records=load,
        policy=load_policy(None),
        registry=metrics.registry,
        admin_token=settings.admin_token,
        require_token=admin_token_required(settings),
    )
    return await aiohttp_client(app)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("experiment", "verdict", "success", "failure"),
    [("good", "pass", True, False), ("broken", "fail", False, True), ("young", "inconclusive", False, False)],
)
async def test_argo_conditions_on_the_real_answer(admin, experiment, verdict, success, failure) -> None:
    metric = argo_metric()
    response = await admin.get("/api/v1/gate", params={"experiment": experiment}, headers=AUTH)
    assert response.status == 200  # always: Argo counts non-2xx as an error, not a failure
    body = json.loads(await response.text())
    result = json_path(body, metric["provider"]["web"]["jsonPath"])
    assert result["verdict"] == verdict
    assert set(result) >= {"verdict", "score", "n_pairs", "checks"}
    assert evaluate_condition(metric["successCondition"], result) is success
    assert evaluate_condition(metric["failureCondition"], result) is failure


async def test_unreachable_store_and_bad_queries_still_answer_200(admin) -> None:
    for params in ({"experiment": "down"}, {"experiment": "good", "since": "soon"}, {}):
        response = await admin.get("/api/v1/gate", params=params, headers=AUTH)
        assert response.status == 200
        data = (await response.json())["data"]
        assert data["verdict"] == "inconclusive" and data["reason"]


async def test_token_is_required_off_loopback(admin) -> None:
    assert (await admin.get("/api/v1/gate", params={"experiment": "good"})).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await admin.post("/api/v1/gate/flagger", json={"name": "good"}, headers=wrong)).status == 401


async def test_flagger_webhook(admin) -> None:
    answer = await admin.post(
        "/api/v1/gate/flagger", json={"name": "x", "metadata": {"experiment": "good"}}, headers=AUTH
    )
    assert answer.status == 200 and (await answer.json())["verdict"] == "pass"
    answer = await admin.post(
        "/api/v1/gate/flagger", json={"name": "broken", "phase": "Progressing"}, headers=AUTH
    )
    assert answer.status == 412
    assert "error_rate" in (await answer.json())["reason"]
    answer = await admin.post("/api/v1/gate/flagger", json={"name": "young"}, headers=AUTH)
    assert answer.status == 409 and (await answer.json())["verdict"] == "inconclusive"
    assert (await admin.post("/api/v1/gate/flagger", data=b"not json", headers=AUTH)).status == 400


async def test_prometheus_gauges_follow_the_latest_verdict(admin) -> None:
    await admin.get("/api/v1/gate", params={"experiment": "broken"}, headers=AUTH)
    text = await (await admin.get("/metrics", headers=AUTH)).text()
    assert 'shadow_gate_verdict{experiment="broken",verdict="fail"} 1.0' in text
    assert 'shadow_gate_score{experiment="broken"} 0.0' in text
    assert 'shadow_gate_pairs{experiment="broken"} 200.0' in text


def test_deploy_examples_parse() -> None:
    for path in DEPLOY.rglob("*.yaml"):
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert documents, path
    dashboard = json.loads((DEPLOY / "grafana" / "shadow-eval-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert any("shadow_gate_score" in e for e in exprs) and any("shadow_mirrored_total" in e for e in exprs)
    canary = yaml.safe_load((DEPLOY / "flagger" / "canary.yaml").read_text())
    assert canary["spec"]["analysis"]["webhooks"][0]["url"].endswith("/api/v1/gate/flagger")


def test_loopback_needs_no_token() -> None:
    app = web.Application()
    add_gate_routes(
        app,
        load_records=lambda _e: [],
        policy=load_policy(None),
        registry=__import__("prometheus_client").CollectorRegistry(),
        admin_token=None,
        require_token=False,
    )
    with pytest.raises(ValueError, match="admin token"):
        add_gate_routes(
            web.Application(),
            load_records=lambda _e: [],
            policy=load_policy(None),
            registry=__import__("prometheus_client").CollectorRegistry(),
            admin_token=None,
            require_token=True,
        )
