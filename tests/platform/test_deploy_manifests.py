"""CI validation of deploy/: each kustomize overlay renders (`kubectl kustomize`) and every object validates against
the Kubernetes schemas (`kubernetes-validate --strict`); the Prometheus Operator kinds, which have no bundled
schema, are checked structurally here (an explicit list, never skipped silently); the alert rules pass
`promtool check rules` and their unit tests (`promtool test rules`), the PrometheusRule carries exactly the rules of
deploy/monitoring/alerts.rules.yml, and every metric the alerts and the Grafana dashboard query is one the code
exports. The pod-level policy the issue asks for (non-root, read-only root, probes per role, resources, Secrets by
reference) is asserted on the rendered objects, so an overlay cannot patch it away unnoticed.

A missing tool is a failure, not a skip: scripts/setup.sh installs them (RWA_SETUP_DEPLOY_TOOLS=1, set by
scripts/test.sh).
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
MONITORING = DEPLOY / "monitoring"
OVERLAYS = ("development", "production")
METRIC_MODULES = ("core/metrics.py", "indexer/metrics.py", "agent/metrics.py", "chains/metrics.py", "jobs/metrics.py")

# Kinds kubernetes-validate has no schema for (CRDs of the Prometheus Operator): validated by _check_crd below.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}

SECRET_KEYS = {
    "DATABASE_URL",
    "REDIS_URL",
    "BROKER_URL",
    "JWT_PRIVATE_KEY",
    "KYC_ENCRYPTION_KEY",
    "HD_WALLET_MNEMONIC",
    "WEBHOOK_SECRET",
    "AGENT_PRIVATE_KEY",
}
REQUIRED_ALERTS = {"IndexerLagHigh", "IndexerChainStopped", "AgentGasLow", "APIErrorRateHigh", "APILatencyP99High"}
ROLE_ARGS = {"api": ["serve"], "indexer": ["index", "run"], "agent": ["agent", "run"], "worker": ["worker"]}


def _tool(name: str) -> str:
    """The tool's path; a missing one fails the test with how to install it."""
    venv_bin = pathlib.Path(sys.executable).parent / name
    path = str(venv_bin) if venv_bin.exists() else shutil.which(name)
    if not path:
        hint = (
            "pip install kubernetes-validate"
            if name == "kubernetes-validate"
            else (f"apt-get install {'prometheus' if name == 'promtool' else name}")
        )
        pytest.fail(f"{name} not found: run `RWA_SETUP_DEPLOY_TOOLS=1 bash scripts/setup.sh` ({hint})")
    return path


def _run(args: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


_rendered: dict[str, list[dict]] = {}


def _render(overlay: str) -> list[dict]:
    if overlay not in _rendered:
        out = _run([_tool("kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)])
        assert out.returncode == 0, out.stderr
        _rendered[overlay] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _rendered[overlay]


def _by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def _pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "Job")]


def _code_metrics() -> set[str]:
    names: set[str] = set()
    for module in METRIC_MODULES:
        text = (ROOT / module).read_text()
        names |= set(re.findall(r'(?:Counter|Gauge|Histogram|Summary)\(\s*"(rwa_\w+)"', text))
    assert len(names) > 20, names  # the regex still matches how the modules declare metrics
    return names


def _queried_metrics(expr: str) -> set[str]:
    """Metric names in a PromQL expression (histogram series suffixes folded onto the histogram's name)."""
    names = set(re.findall(r"\brwa_[a-z0-9_]+", expr))
    return {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}


def _check_crd(doc: dict) -> list[str]:
    """Structural checks of a Prometheus Operator object (no schema is bundled for it)."""
    problems = []
    allowed = {"apiVersion", "kind", "metadata", "spec"}
    if set(doc) - allowed:
        problems.append(f"unexpected top-level fields {set(doc) - allowed}")
    name = doc.get("metadata", {}).get("name")
    if not name:
        problems.append("metadata.name missing")
    spec = doc.get("spec") or {}
    if doc["kind"] == "ServiceMonitor":
        if not spec.get("selector", {}).get("matchLabels"):
            problems.append(f"{name}: spec.selector.matchLabels missing")
        for ep in spec.get("endpoints") or [None]:
            if not isinstance(ep, dict) or not isinstance(ep.get("port"), str):
                problems.append(f"{name}: every endpoint needs a named port")
            elif set(ep) - {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}:
                problems.append(f"{name}: unexpected endpoint fields {set(ep) - {'port', 'path', 'interval'}}")
    else:
        groups = spec.get("groups")
        if not groups:
            problems.append(f"{name}: spec.groups missing")
        for g in groups or []:
            if set(g) - {"name", "interval", "rules"} or not g.get("name") or not g.get("rules"):
                problems.append(f"{name}: malformed group {g.get('name')}")
            for r in g.get("rules", []):
                if not isinstance(r.get("expr"), str) or ("alert" in r) == ("record" in r):
                    problems.append(f"{name}: rule needs expr and exactly one of alert/record: {r}")
                if set(r) - {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}:
                    problems.append(f"{name}: unexpected rule fields in {r.get('alert')}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_validates(overlay: str, tmp_path: pathlib.Path) -> None:
    docs = _render(overlay)
    crds = [d for d in docs if (d["apiVersion"], d["kind"]) in CRD_KINDS]
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CRD_KINDS]
    assert core
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(core))
    out = _run([_tool("kubernetes-validate"), "--strict", str(rendered)])
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    # a kind without a bundled schema is only a warning to kubernetes-validate: here it is a failure
    assert "Couldn't find schema" not in report, report
    assert report.count(" passed for resource ") == len(core), report
    problems = [p for d in crds for p in _check_crd(d)]
    assert not problems, problems
    if overlay == "production":
        assert {d["kind"] for d in crds} == {"ServiceMonitor", "PrometheusRule"}


def test_strict_validation_rejects_an_unknown_field(tmp_path: pathlib.Path) -> None:
    """The validator really is strict: a misspelt field in a Deployment fails it."""
    deployment = next(d for d in _render("production") if d["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"tcpSocket": {"port": 1}}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    out = _run([_tool("kubernetes-validate"), "--strict", str(path)])
    assert out.returncode != 0, out.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_locked_down_and_take_secrets_by_reference(overlay: str) -> None:
    docs = _render(overlay)
    specs = _pod_specs(docs)
    assert {name for name, _ in specs} == {"rwa-api", "rwa-indexer", "rwa-agent", "rwa-worker", "rwa-migrate"}
    for name, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"], name
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", name
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][part]), (name, part)
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            for path in ("/tmp", "/var/lib/rwa"):  # writable scratch and RWA_DATA_DIR on a read-only root
                assert "emptyDir" in volumes[mounts[path]], (name, path)
            env = {e["name"]: e for e in c.get("env", [])}
            assert SECRET_KEYS <= set(env), (name, SECRET_KEYS - set(env))
            for key in SECRET_KEYS:
                ref = env[key]["valueFrom"]["secretKeyRef"]
                assert ref["key"] == key and ref["name"].startswith("rwa-secrets") and not ref.get("optional"), key
            assert not [e for e in env.values() if "value" in e], (name, "plain env values: use the ConfigMap")
    secrets = _by_kind(docs, "Secret")
    config = _by_kind(docs, "ConfigMap")[0]["data"]
    assert not SECRET_KEYS & set(config), "a secret in the ConfigMap"
    if overlay == "production":
        assert secrets == [], "production must not commit a Secret: it is created out of band"
        assert config["RWA_ENV"] == "production"
    else:
        assert [s["metadata"]["labels"].get("rwa.dev/development-only") for s in secrets] == ["true"]
        assert config["RWA_ENV"] == "development"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_roles_probes_scaling_and_disruption(overlay: str) -> None:
    docs = _render(overlay)
    deployments = {d["metadata"]["name"]: d for d in _by_kind(docs, "Deployment")}
    for role, args in ROLE_ARGS.items():
        pod = deployments[f"rwa-{role}"]["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["args"][: len(args)] == args, role
        assert "livenessProbe" in c, f"{role} has no liveness probe"
        assert pod["terminationGracePeriodSeconds"] >= 30, role
    api = deployments["rwa-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["ports"][0]["containerPort"] == 8000
    # writer + standby: the advisory lock decides, so exactly two and no autoscaler on it
    assert deployments["rwa-indexer"]["spec"]["replicas"] == 2
    assert deployments["rwa-agent"]["spec"]["replicas"] == 2
    assert "replicas" not in deployments["rwa-api"]["spec"], "the HPA owns the API's replica count"
    hpas = _by_kind(docs, "HorizontalPodAutoscaler")
    assert [(h["apiVersion"], h["spec"]["scaleTargetRef"]["name"]) for h in hpas] == [("autoscaling/v2", "rwa-api")]
    assert hpas[0]["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpas[0]["spec"]["minReplicas"] >= 1
    # every PDB, Service and ServiceMonitor selects pods/Services that exist
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in deployments.values()]
    for obj in _by_kind(docs, "PodDisruptionBudget") + _by_kind(docs, "Service"):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        assert any(selector.items() <= labels.items() for labels in pod_labels), obj["metadata"]["name"]
    assert "rwa-api" in {p["metadata"]["name"] for p in _by_kind(docs, "PodDisruptionBudget")}
    services = _by_kind(docs, "Service")
    for sm in _by_kind(docs, "ServiceMonitor"):
        wanted = sm["spec"]["selector"]["matchLabels"].items()
        matching = [s for s in services if wanted <= s["metadata"]["labels"].items()]
        ports = {p["name"] for s in matching for p in s["spec"]["ports"]}
        assert {e["port"] for e in sm["spec"]["endpoints"]} <= ports, sm["metadata"]["name"]
    job = _by_kind(docs, "Job")[0]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # network: default deny (every pod, both directions) and the API's port open
    policies = {p["metadata"]["name"]: p["spec"] for p in _by_kind(docs, "NetworkPolicy")}
    deny = policies["rwa-default-deny"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    api_ports = {p["port"] for p in policies["rwa-api-ingress"]["ingress"][0]["ports"]}
    assert api_ports == {8000}
    if overlay == "production":  # not from any pod of the cluster: from the ingress controller's namespace only
        sources = policies["rwa-api-ingress"]["ingress"][0]["from"]
        assert sources and all(set(s) == {"namespaceSelector"} and s["namespaceSelector"] for s in sources)
    egress_ports = {p["port"] for rule in policies["rwa-egress"]["egress"] for p in rule["ports"]}
    assert {53, 5432, 6379, 5672, 443} <= egress_ports


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    sys.path.insert(0, str(MONITORING))
    try:
        import sync_prometheusrule
    finally:
        sys.path.remove(str(MONITORING))
    assert (DEPLOY / "base" / "prometheusrule.yaml").read_text() == sync_prometheusrule.render(), (
        "deploy/base/prometheusrule.yaml is stale: run python deploy/monitoring/sync_prometheusrule.py"
    )
    rule = next(d for d in _render("production") if d["kind"] == "PrometheusRule")
    source = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"]
    alerts = {r["alert"] for g in source["groups"] for r in g["rules"]}
    assert REQUIRED_ALERTS <= alerts, REQUIRED_ALERTS - alerts


def test_promtool_checks_and_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    check = _run([promtool, "check", "rules", str(MONITORING / "alerts.rules.yml")])
    assert check.returncode == 0, check.stdout + check.stderr
    test = _run([promtool, "test", "rules", str(MONITORING / "alerts.test.yml")])
    assert test.returncode == 0, test.stdout + test.stderr
    tested = set(re.findall(r"alertname:\s*(\w+)", (MONITORING / "alerts.test.yml").read_text()))
    assert REQUIRED_ALERTS <= tested, REQUIRED_ALERTS - tested


@pytest.mark.parametrize("alert", sorted(REQUIRED_ALERTS))
def test_promtool_unit_tests_catch_a_broken_alert(alert: str, tmp_path: pathlib.Path) -> None:
    """Each main alert's unit test fails when the alert never fires (the tests are not vacuous)."""
    rules = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule["expr"] = "vector(1) == 0"
    (tmp_path / "alerts.rules.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(MONITORING / "alerts.test.yml", tmp_path / "alerts.test.yml")
    out = _run([_tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=tmp_path)
    assert out.returncode != 0 and alert in out.stdout + out.stderr, out.stdout


def test_alerts_and_dashboard_query_only_exported_metrics() -> None:
    exported = _code_metrics()
    rules = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            queried = _queried_metrics(rule["expr"])
            assert queried and queried <= exported, (rule["alert"], queried - exported)
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["title"] and dashboard["uid"]
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    queried = set().union(*(_queried_metrics(e) for e in exprs))
    assert queried <= exported, queried - exported
    # the dashboard shows what the alerts watch
    alert_metrics = set().union(*(_queried_metrics(r["expr"]) for g in rules["groups"] for r in g["rules"]))
    assert alert_metrics <= queried, alert_metrics - queried


def test_a_renamed_metric_would_be_caught() -> None:
    """The metric-name check is not vacuous: a name the code does not export is reported."""
    assert _queried_metrics("rate(rwa_graphql_request_seconds_bucket[5m]) + rwa_no_such_metric") - _code_metrics() == {
        "rwa_no_such_metric"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_is_probed_on_its_ops_port(overlay: str) -> None:
    """Indexer, agent and worker: liveness /healthz and readiness /readyz on the ops port their process serves
    (core/ops_server.py), the port the ConfigMap gives it; the API's metrics are scraped from its ops port only."""
    docs = _render(overlay)
    config = _by_kind(docs, "ConfigMap")[0]["data"]
    assert config["RWA_OPS_HOST"] == "0.0.0.0"
    ports = {
        "indexer": config["RWA_INDEXER_METRICS_PORT"],
        "agent": config["RWA_AGENT_METRICS_PORT"],
        "worker": config["RWA_WORKER_METRICS_PORT"],
        "api": config["RWA_API_METRICS_PORT"],
    }
    deployments = {d["metadata"]["name"]: d for d in _by_kind(docs, "Deployment")}
    for role, port in ports.items():
        c = deployments[f"rwa-{role}"]["spec"]["template"]["spec"]["containers"][0]
        named = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert named["metrics"] == int(port), role
        if role == "api":
            continue
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", "/healthz")):
            assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, (role, probe)
    monitors = {m["metadata"]["name"]: m for m in _by_kind(docs, "ServiceMonitor")}
    if overlay == "production":
        assert {e["port"] for e in monitors["rwa-api"]["spec"]["endpoints"]} == {"metrics"}
        assert "rwa-worker" in monitors
    assert config["MIGRATE_ON_START"] == "false"
    policies = {p["metadata"]["name"]: p["spec"] for p in _by_kind(docs, "NetworkPolicy")}
    scraped = {p["port"] for p in policies["rwa-metrics-ingress"]["ingress"][0]["ports"]}
    assert {int(p) for p in ports.values()} <= scraped


def test_a_missing_tool_fails_the_test_instead_of_skipping() -> None:
    with pytest.raises(pytest.fail.Exception, match="RWA_SETUP_DEPLOY_TOOLS=1"):
        _tool("rwa-no-such-deploy-tool")
