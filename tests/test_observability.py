"""The Prometheus config, alert rules and Grafana dashboard work against the real service.

* ``promtool`` (Debian's, from ``make system-deps``) accepts the config and the rules, and the rule unit tests in
  ``deploy/prometheus/alerts.test.yml`` show each alert firing on a synthetic series.
* A real deployment (webhook + ``celery -A worker worker`` + Prometheus loading ``alerts.yml``) processes a few
  uploads, among them copies and a corrupt file. Then every PromQL expression of the dashboard and the rules runs
  through Prometheus' HTTP API. How each is checked, deliberately:

  - every expression must succeed (it parses and evaluates);
  - every *series it reads* (each selector, e.g. ``dedup_images_total{outcome="duplicate"}`` or a recording
    rule's ``dedup:queue_depth:max``) must hold data, so that no panel or alert watches a misspelt or unexported
    metric — except the few in :data:`EMPTY_WHEN_HEALTHY`, which appear only when something goes wrong;
  - dashboard and recording-rule expressions must return a finite number (latency quantiles: for every stage);
  - alert expressions are thresholds, empty while healthy, so the test checks what Prometheus made of them: every
    rule evaluates with health "ok", and exactly the alert this traffic deserves is pending (one corrupt file in
    nine images is an 11 % error rate, over DedupErrorRateHigh's 5 %).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deployment import Deployment, deploy
from tooling.localstack import LocalStack, require, wait_until
from tooling.samples import upload_set
from worker.metrics import STAGES

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "image-dedup.json"

#: Selectors that legitimately return nothing from a healthy deployment, and why.
EMPTY_WHEN_HEALTHY = {
    "dedup_retries_total": "a retry reason's series appears with its first retry",
    'ALERTS{alertstate="firing", alertname=~"Dedup.*"}': "nothing fires (every alert waits out its `for`)",
}

#: The alerts this test's traffic makes pending: 1 corrupt file among 9 images.
EXPECTED_PENDING = {"DedupErrorRateHigh"}


# The expressions ----------------------------------------------------------------------------------------------


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def recording_expressions() -> list[str]:
    return [rule["expr"] for rule in rules() if "record" in rule]


def alert_expressions() -> list[str]:
    return [rule["expr"] for rule in rules() if "alert" in rule]


_SKIP = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)|\[[^\]]*\]|\boffset\s+\w+")
_SELECTOR = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])\s*(\{[^}]*\})?(?!\s*\()|(\{[^}]*\})")
_NOT_SELECTORS = {"and", "or", "unless", "bool", "inf", "nan", "sum", "min", "max", "avg", "count", "group"}


def selectors(expr: str) -> list[str]:
    """The instant-vector selectors an expression reads (range and offset stripped, functions skipped).

    >>> selectors('sum by (kind) (rate(dedup_images_total{outcome="duplicate"}[5m])) / scalar(sum(up))')
    ['dedup_images_total{outcome="duplicate"}', 'up']
    """
    found = []
    for match in _SELECTOR.finditer(_SKIP.sub(" ", expr)):
        name, matchers, bare = match.groups()
        if name in _NOT_SELECTORS:
            continue
        found.append(bare if bare else name + (matchers or ""))
    return found


def test_selectors_are_found_in_every_shape_the_files_use() -> None:
    assert selectors(
        'dedup:ratio > 2 * avg_over_time(dedup:ratio[1d]) and max by (queue) (x{a="1", b=~"c|d"}) unless '
        '(sum(up{job="worker"}) or vector(0)) < 1 and histogram_quantile(0.5, sum by (le) (rate(h_bucket[5m])))'
    ) == ["dedup:ratio", "dedup:ratio", 'x{a="1", b=~"c|d"}', 'up{job="worker"}', "h_bucket"]
    assert selectors("deriv(q[15m] offset 1h) > 0") == ["q"]


def test_every_dashboard_panel_and_rule_reads_some_series() -> None:
    expressions = dashboard_expressions() + recording_expressions() + alert_expressions()
    assert len(expressions) >= 20
    assert all(selectors(expr) for expr in expressions)


# promtool -----------------------------------------------------------------------------------------------------


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require("promtool", "install Debian's `prometheus` package (make system-deps does)")
    return subprocess.run([binary, *args], cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_config_and_its_rules() -> None:
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    assert "1 rule files found" in config.stdout  # the config loads alerts.yml
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_show_every_alert_firing() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in rules() if "alert" in rule}


# Against a live deployment ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def observed(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A deployment whose Prometheus loads the real rules, after it processed originals, copies and a corrupt
    file (1 + 1 exact + 5 perceptual copies + 1 unrelated + 1 corrupt = 9 images)."""
    with deploy(stack, tmp_path_factory.mktemp("observed"), db=12, rule_files=[RULES]) as d:
        samples = upload_set("observed/", ["astronaut.png"], ["coffee.png"])
        assert len(samples) == 9
        events = d.upload(samples)
        d.deliver(events)
        d.outcomes(events)
        d.wait_for_metric('sum(dedup_images_total{job="worker"})', len(samples))
        d.scraped()
        yield d


@pytest.mark.integration
def test_every_series_a_panel_or_rule_reads_holds_data(observed: Deployment) -> None:
    everything = dashboard_expressions() + recording_expressions() + alert_expressions()
    wanted = {selector for expr in everything for selector in selectors(expr)} - set(EMPTY_WHEN_HEALTHY)
    # Recording rules are evaluated every second: wait for those too, rather than for one evaluation.
    missing: set[str] = set()

    def all_present() -> bool:
        missing.clear()
        missing.update(s for s in wanted if not observed.samples(s))
        return not missing

    try:
        wait_until(all_present, 30, "every series", interval=0.5)
    except TimeoutError:
        pytest.fail(f"no data for {sorted(missing)}")


@pytest.mark.integration
@pytest.mark.parametrize("expr", dashboard_expressions() + recording_expressions())
def test_dashboard_and_recording_expressions_return_numbers(observed: Deployment, expr: str) -> None:
    result = observed.samples(expr)
    if set(selectors(expr)) & set(EMPTY_WHEN_HEALTHY):
        return  # ran without error; empty is right for a healthy deployment
    finite = [s for s in result if math.isfinite(float(s["value"][1]))]
    assert finite, f"{expr}: {result}"
    if expr.startswith("histogram_quantile("):  # latency: every stage ran, so every stage has a quantile
        assert {s["metric"]["stage"] for s in finite} == set(STAGES), result


@pytest.mark.integration
@pytest.mark.parametrize("expr", alert_expressions())
def test_alert_expressions_evaluate(observed: Deployment, expr: str) -> None:
    observed.samples(expr)  # status "success": the expression parses and evaluates on live data


@pytest.mark.integration
def test_prometheus_evaluates_every_rule_and_only_the_deserved_alert_is_pending(observed: Deployment) -> None:
    expected = {rule.get("record") or rule["alert"] for rule in rules()}
    loaded: dict[str, dict[str, Any]] = {}

    def evaluated() -> bool:
        groups = httpx.get(f"{observed.prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded.clear()
        loaded.update({rule["name"]: rule for group in groups for rule in group["rules"]})
        return all(rule["health"] != "unknown" for rule in loaded.values())

    wait_until(evaluated, 30, "every rule evaluated", interval=0.5)
    assert set(loaded) == expected
    broken = {name: rule.get("lastError") for name, rule in loaded.items() if rule["health"] != "ok"}
    assert not broken

    active: set[tuple[str, str]] = set()

    def only_the_deserved_alert() -> bool:
        alerts = httpx.get(f"{observed.prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        active.clear()
        active.update((alert["labels"]["alertname"], alert["state"]) for alert in alerts)
        return active == {(name, "pending") for name in EXPECTED_PENDING}

    try:
        wait_until(only_the_deserved_alert, 30, "the expected pending alerts", interval=0.5)
    except TimeoutError:
        pytest.fail(f"active alerts {sorted(active)}, expected {sorted(EXPECTED_PENDING)} pending")


@pytest.mark.integration
def test_the_webhook_reports_the_drained_queue(observed: Deployment) -> None:
    assert observed.query('dedup_queue_up{job="webhook"}') == 1
    observed.wait_for_metric('dedup_queue_depth{job="webhook",queue="dedup"}', 0)
    observed.wait_for_metric('dedup_queue_unacked{job="webhook"}', 0)
    assert observed.samples('dedup_queue_depth{job="worker"}') == []  # one exporter per fact


@pytest.mark.integration
def test_a_lone_worker_counts_its_stores_and_skips_every_recheck(observed: Deployment) -> None:
    """The worker counts its stores in Redis (worker.stores): alone, no batch of new originals searches twice."""
    assert observed.query('sum(dedup_rechecks_total{job="worker",result="skipped"})') >= 1
    assert observed.query('sum(dedup_rechecks_total{job="worker",result="searched"})') == 0
