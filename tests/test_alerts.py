"""The alerts (deploy/prometheus-operator/prometheusrule.yaml) and the Grafana dashboard
(deploy/grafana/prime-billing.json), against Prometheus' own tools.

The PrometheusRule is the one source of the rules: its `spec` is written to a tmp file for promtool
(`check rules`, then the unit tests in tests/alerts/) and for a real Prometheus on loopback that
scrapes a real launcher over the sandbox, where an alert is seen firing and every dashboard query
returns a series. promtool and prometheus come from Debian's `prometheus` package (.ci/run installs
it); without them those tests skip.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import ROOT, cents, script_env, until
from prime_billing.sandbox.data import stamp, wallets
from prime_billing.serve import MCP_PATH
from serve_harness import tool_call

RULE = ROOT / "deploy" / "prometheus-operator" / "prometheusrule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "prime-billing.json"
UNIT_TESTS = ROOT / "tests" / "alerts"
#: the file name the unit tests' `rule_files` give
RULES_FILE = "prime-billing.rules.yaml"
THRESHOLD = "prime_billing:threshold_"
SEVERITIES = {"critical", "warning"}

#: What a user running the sandbox would set, the way they would: one threshold changed in the
#: rules' first group (a minimum above the sandbox wallet's $123.45), and the `for:` of that alert and of
#: the budget one shortened.
USER_THRESHOLDS = {"prime_billing:threshold_balance_min_usd": 200}
USER_FOR = {"PrimeWalletBelowMinimum": "1s", "PrimeBudgetOnPace": "1s"}
#: the budget the launcher watches: a cent, so the sandbox's spend in its period is over it
BUDGET_USD = "0.01"
#: the sandbox's personal wallet (sandbox/data.py): its id and balance
SANDBOX_WALLET, SANDBOX_BALANCE = "wal_sbx_personal", "123.45"
TOKEN = "scrape-token-for-the-test"
JOB = "prime-billing"


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: it comes with Debian's prometheus package (.ci/run installs it)")
    return found


def manifest() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(RULE.read_text(encoding="utf-8")) if d]
    assert (doc["apiVersion"], doc["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return doc


def rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def alerts(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules(spec) if "alert" in rule}


def write_rules(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path


def as_a_user_sets(spec: dict[str, Any], thresholds: dict[str, float], fors: dict[str, str]) -> dict[str, Any]:
    """The rules with thresholds and `for:` durations changed where the manifest says to change them."""
    spec = copy.deepcopy(spec)
    changed = set()
    for rule in rules(spec):
        if rule.get("record") in thresholds:
            rule["expr"] = f"vector({thresholds[rule['record']]})"
            changed.add(rule["record"])
        if rule.get("alert") in fors:
            rule["for"] = fors[rule["alert"]]
            changed.add(rule["alert"])
    assert changed == set(thresholds) | set(fors)
    return spec


# --------------------------------------------------------------------------- the rules, as written


def test_the_thresholds_users_set_are_the_first_rules_and_the_only_numbers_the_alerts_use() -> None:
    spec = manifest()["spec"]
    (group,) = spec["groups"]  # one group: its rules run in order, so the alerts see this evaluation's thresholds
    records = [rule.get("record", "") for rule in group["rules"]]
    thresholds = [name for name in records if name.startswith(THRESHOLD)]
    assert thresholds and records[: len(thresholds)] == thresholds
    for rule in group["rules"][: len(thresholds)]:
        assert re.fullmatch(r"vector\([0-9.]+\)", rule["expr"]), rule
    # every other number in the rules is 24 (hours a day) or 0 (up == 0, a spent balance), besides
    # the baseline's durations (7d, 1h)
    for rule in group["rules"][len(thresholds) :]:
        numbers = re.findall(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])", rule["expr"])
        assert set(numbers) <= {"0", "24"}, (rule.get("record") or rule.get("alert"), numbers)
    # and every threshold is compared against by an alert
    exprs = " ".join(rule["expr"] for rule in alerts(spec).values())
    assert all(name in exprs for name in thresholds)


def test_the_reference_lists_the_thresholds_with_their_defaults_in_order() -> None:
    page = (ROOT / "reference" / "monitoring.md").read_text(encoding="utf-8")
    listed = re.findall(rf"^\| `({THRESHOLD}\w+)` \| ([0-9.]+) \|", page, flags=re.MULTILINE)
    shipped = [
        (rule["record"], rule["expr"].removeprefix("vector(").removesuffix(")"))
        for rule in rules(manifest()["spec"])
        if rule.get("record", "").startswith(THRESHOLD)
    ]
    assert listed == shipped
    # the reference's alert table: every alert, with its `for:` and severity
    table = dict(re.findall(r"^\| `(Prime\w+)` \| [^|]+ \| (\w+ \| \w+) \|$", page, flags=re.MULTILINE))
    found = alerts(manifest()["spec"])
    assert table == {name: f"{rule['for']} | {rule['labels']['severity']}" for name, rule in found.items()}


def test_each_alert_waits_a_while_has_a_severity_and_says_what_in_one_line() -> None:
    found = alerts(manifest()["spec"])
    assert {
        "PrimeWalletBelowMinimum",
        "PrimeWalletRunwayShort",
        "PrimeWalletBurnSpike",
        "PrimeWalletUnread",
        "PrimeBudgetOnPace",
    } <= set(found)
    for name, rule in found.items():
        assert re.fullmatch(r"[0-9]+[mh]", rule["for"]), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            assert text.strip() and "\n" not in text.strip(), (name, key)
        assert "$labels." in rule["annotations"]["summary"], name


def test_promtool_accepts_the_prometheusrule_spec(tmp_path: Path) -> None:
    promtool = binary("promtool")
    path = write_rules(tmp_path / RULES_FILE, manifest()["spec"])
    out = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules(manifest()['spec']))} rules found" in out.stdout


def unit_test_files() -> list[Path]:
    return sorted(UNIT_TESTS.glob("*.test.yaml"))


def test_the_unit_tests_see_every_alert_fire_and_stay_quiet() -> None:
    """For each alert, a case where it fires and one where it does not (the edges are in the files)."""
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in unit_test_files():
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["rule_files"] == [RULES_FILE], path.name
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = set(alerts(manifest()["spec"]))
    assert fired == names and quiet == names


def test_the_rule_unit_tests_pass(tmp_path: Path) -> None:
    promtool = binary("promtool")
    write_rules(tmp_path / RULES_FILE, manifest()["spec"])
    files = [shutil.copy(path, tmp_path / path.name) for path in unit_test_files()]
    out = subprocess.run([promtool, "test", "rules", *map(str, files)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(files), out.stdout


# --------------------------------------------------------------------------- a real Prometheus


@dataclass
class Monitoring:
    """A launcher over the sandbox and the Prometheus scraping it, both real processes on loopback."""

    prometheus: str
    rest: str
    mcp: str
    spec: dict[str, Any]
    #: the period the launcher's budget watches, and the sandbox's spend in it so far, in cents (by hand)
    period: str
    spent: int

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.prometheus}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        assert (r.status_code, body["status"]) == (200, "success"), r.text
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def start_launcher(home: Path, newest: datetime, budget: str) -> tuple[subprocess.Popen[str], str, str]:
    """`prime-billing serve --sandbox` with a token and a budget to watch, its newest row at `newest`, on
    ephemeral ports: the process, its REST and MCP URLs."""
    env = script_env(home, sandbox_now=stamp(newest), PRIME_BILLING_TOKEN=TOKEN)
    # the Host Prometheus sends is the target's address: allowed here, as the Deployment allows $(POD_IP)
    command = ["serve", "--sandbox", "--rest-port", "0", "--mcp-port", "0", "--allow-host", "127.0.0.1"]
    command += ["--watch-budget", budget]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime_billing", *command, "--no-access-log"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    urls = [word.rstrip(",;") for word in line.split() if word.startswith("http://")]
    mcp = [url for url in urls if url.endswith(MCP_PATH)]
    rest = [url for url in urls if not url.endswith(MCP_PATH)]
    if len(mcp) != 1 or len(rest) != 1:
        stop(proc)
        errors = proc.stderr.read() if proc.stderr else ""
        pytest.fail(f"the launcher did not announce its two ports: {line!r} {errors}")
    return proc, rest[0], mcp[0]


def start_prometheus(workdir: Path, target: str, rules_file: Path) -> tuple[subprocess.Popen[str], str]:
    """Prometheus on 127.0.0.1 (an ephemeral port), scraping `target` every second with the callers'
    token, as the ServiceMonitor does, and evaluating the rules every second."""
    (workdir / "token").write_text(TOKEN, encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": JOB,
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(workdir / "token")},
                "static_configs": [{"targets": [target]}],
            }
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    log = workdir / "prometheus.log"
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            [
                binary("prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            text=True,
        )
    # it logs the port it was given: `msg="Listening on" address=127.0.0.1:PORT`
    listening = re.compile(r'msg="Listening on" address=(127\.0\.0\.1:[0-9]+)')

    def announced() -> bool:
        assert proc.poll() is None, log.read_text(encoding="utf-8")[-3000:]
        return listening.search(log.read_text(encoding="utf-8")) is not None

    try:
        until(announced, "Prometheus listening", guard=60)
        match = listening.search(log.read_text(encoding="utf-8"))
        assert match is not None
        url = f"http://{match[1]}"
        until(lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200, "Prometheus ready", guard=60)
    except BaseException:
        stop(proc)
        raise
    return proc, url


@pytest.fixture(scope="module")
def monitoring(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    home = tmp_path_factory.mktemp("home")
    spec = as_a_user_sets(manifest()["spec"], USER_THRESHOLDS, USER_FOR)
    rules_file = write_rules(workdir / RULES_FILE, spec)
    # the sandbox's newest row a day and an hour ago: none in the last 24 hours (no burn, an unbounded runway), while
    # the month, or else the ISO week, began before it and holds its rows (both began within the day: no spend)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    newest = now - timedelta(hours=25)
    starts = {
        "month": now.replace(day=1, hour=0, minute=0),
        "week": now.replace(hour=0, minute=0) - timedelta(days=now.weekday()),
    }
    period = next((p for p, start in starts.items() if start <= newest), "month")
    rows = wallets(newest)[None]["rows"]
    spent = sum(cents(r["amount_usd"]) for r in rows if datetime.fromisoformat(r["created_at"]) >= starts[period])
    launcher, rest, mcp = start_launcher(home, newest, f"{BUDGET_USD}/{period}")
    try:
        target = rest.removeprefix("http://")
        prometheus, url = start_prometheus(workdir, target, rules_file)
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(headers=auth, timeout=30) as client:
                # traffic for the dashboard: a success, a run the upstream does not know (404), one tool call
                assert client.get(f"{rest}/v1/api/v1/billing/wallet").status_code == 200
                assert client.get(f"{rest}/v1/api/v1/billing/runs/rft_sbx_no_such_run/usage").status_code == 404
                assert not tool_call(client, mcp, "prime-intellect-getwallet", {}).get("isError")
            yield Monitoring(url, rest, mcp, spec, period, spent)
        finally:
            stop(prometheus)
    finally:
        stop(launcher)


def test_prometheus_fires_the_users_minimum_on_the_launchers_wallet(monitoring: Monitoring) -> None:
    """The shipped rules, a minimum set above the sandbox's balance and `for:` shortened: the alert fires
    on the wallet the launcher reads, its text filled in from the labels and the threshold."""
    groups = monitoring.api("rules")["groups"]
    assert [(g["name"], len(g["rules"])) for g in groups] == [
        (g["name"], len(g["rules"])) for g in monitoring.spec["groups"]
    ]
    until(
        lambda: monitoring.query(f'up{{job="{JOB}"}} == 1') != [],
        "the launcher scraped with the token",
        guard=60,
    )

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in monitoring.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "PrimeWalletBelowMinimum" and a["state"] == "firing"
        ]

    until(lambda: firing() != [], "PrimeWalletBelowMinimum firing", guard=60)
    (alert,) = firing()
    assert alert["labels"] == {
        "alertname": "PrimeWalletBelowMinimum",
        "severity": "critical",
        "job": JOB,
        "wallet_id": SANDBOX_WALLET,
    }
    assert alert["annotations"] == {
        "summary": f"Wallet {SANDBOX_WALLET} is down to ${SANDBOX_BALANCE}",
        "description": "Below the minimum of $200.00: top the wallet up before runs stop.",
    }
    # with no spend in the last 24 hours the runway is unbounded: not short
    (runway,) = monitoring.query("job:prime_wallet_runway_days")
    assert runway["value"][1] == "+Inf"


def test_prometheus_fires_a_budget_on_pace_to_be_exceeded(monitoring: Monitoring) -> None:
    """The launcher watches a budget of a cent for a period holding sandbox rows, the alert's `for:` shortened: the
    spend Prometheus holds is the rows' sum worked out by hand, and the alert fires on that wallet and period, its
    text filled in from the projection and the budget."""
    if not monitoring.spent:
        pytest.skip("the month and the ISO week both began within the last day: no sandbox row in them is a day old")
    series = f'job:prime_budget_spent_usd:max{{wallet_id="{SANDBOX_WALLET}",period="{monitoring.period}"}}'
    until(lambda: monitoring.query(series) != [], "the budget's spend scraped", guard=60)
    (spent,) = monitoring.query(series)
    assert cents(float(spent["value"][1])) == monitoring.spent

    def firing() -> list[dict[str, Any]]:
        return [
            a
            for a in monitoring.api("alerts")["alerts"]
            if a["labels"]["alertname"] == "PrimeBudgetOnPace" and a["state"] == "firing"
        ]

    until(lambda: firing() != [], "PrimeBudgetOnPace firing", guard=60)
    (alert,) = firing()
    assert alert["labels"] == {
        "alertname": "PrimeBudgetOnPace",
        "severity": "warning",
        "job": JOB,
        "wallet_id": SANDBOX_WALLET,
        "period": monitoring.period,
    }
    # the projection is at least what was spent; the budget a cent
    projected = float(alert["value"])
    assert projected >= monitoring.spent / 100
    assert alert["annotations"]["summary"] == (
        f"Wallet {SANDBOX_WALLET} is on pace for ${projected:.2f} against its ${BUDGET_USD} {monitoring.period} budget"
    )
    assert alert["annotations"]["description"].startswith(
        f"At the pace since the {monitoring.period} began, the spend passes 100% of the budget"
    )


# --------------------------------------------------------------------------- the dashboard


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in doc["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def datasource_refs(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


#: the variables Grafana itself defines
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}


def test_the_dashboard_is_grafana_json_on_a_prometheus_datasource_variable() -> None:
    doc = dashboard()
    assert doc["title"] and doc["uid"] and isinstance(doc["schemaVersion"], int)
    assert "id" not in doc or doc["id"] is None  # Grafana gives the id on import
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    (source,) = [v for v in variables.values() if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    source_ref = {"type": "prometheus", "uid": f"${{{source['name']}}}"}
    # no datasource named by a fixed uid anywhere: every reference is the variable
    refs = list(datasource_refs(doc))
    assert refs and all(ref == source_ref for ref in refs), [r for r in refs if r != source_ref]

    every = panels(doc)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    boxes = []
    for p in every:
        g = p["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and g["x"] + g["w"] <= 24, p["title"]
        boxes.append((p["title"], g))
        if p["type"] == "row":
            continue
        assert p["type"] in {"stat", "timeseries", "bargauge", "gauge", "table"}, p["title"]
        refids = [t["refId"] for t in p["targets"]]
        assert p["targets"] and len(refids) == len(set(refids)), p["title"]
        for target in p["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= set(variables) | GRAFANA_VARIABLES, (p["title"], used)
    # no two panels overlap
    for i, (title, a) in enumerate(boxes):
        for other, b in boxes[i + 1 :]:
            apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
            assert apart or b["y"] + b["h"] <= a["y"], (title, other)
    titles = " ".join(p["title"].lower() for p in every)
    for word in ("balance", "burn", "runway", "budget", "requests", "upstream errors"):
        assert word in titles


def grafana_expr(expr: str, doc: dict[str, Any]) -> str:
    """The query as Grafana sends it with every variable at "All": `$job` is its allValue; the rate
    window is what Grafana's $__rate_interval comes to with the default 15 s scrape setting."""
    for variable in doc["templating"]["list"]:
        if variable["type"] == "query":
            expr = re.sub(rf"\$\{{?{variable['name']}\}}?", variable["allValue"], expr)
    return expr.replace("$__rate_interval", "1m")


def test_every_dashboard_query_returns_a_series_from_prometheus(monitoring: Monitoring) -> None:
    doc = dashboard()
    queried = [p for p in panels(doc) if p["type"] != "row"]
    assert any("prime_budget_" in t["expr"] for p in queried for t in p["targets"])  # the budget panels, checked too

    # the job variable lists the job Prometheus scrapes the launcher as
    (job,) = [v for v in doc["templating"]["list"] if v["name"] == "job"]
    metric = re.fullmatch(r"label_values\((\w+), job\)", job["query"]["query"])
    assert metric is not None
    until(lambda: JOB in monitoring.api("label/job/values", **{"match[]": metric[1]}), "the job variable", guard=60)

    for panel in queried:
        for target in panel["targets"]:
            expr = grafana_expr(target["expr"], doc)
            until(lambda e=expr: monitoring.query(e) != [], f"a series for {panel['title']}: {expr}", guard=60)
