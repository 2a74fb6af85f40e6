"""deploy/: the manifests say what the launcher needs (probes, both ports, the key from a Secret, autoscaling)."""

from __future__ import annotations

import yaml

from conftest import ROOT

DEPLOY = ROOT / "deploy"


def docs() -> dict[str, dict]:
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[doc["kind"]] = doc
    return found


def test_manifests_probe_healthz_serve_both_ports_and_take_the_key_from_a_secret() -> None:
    k = docs()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Kustomization"} <= set(k)
    pod = k["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in container["ports"]} == {8080, 9090}
    env = {e["name"]: e for e in container["env"]}
    for name in ("PRIME_API_KEY", "PRIME_BILLING_TOKEN"):
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == name
    drain = float(container["args"][container["args"].index("--drain") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert {p["port"] for p in k["Service"]["spec"]["ports"]} == {8080, 9090}
    assert k["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == k["Deployment"]["metadata"]["name"]
    resources = set(k["Kustomization"]["resources"])
    assert resources == {"deployment.yaml", "service.yaml", "hpa.yaml"}


def test_dockerfile_installs_the_serve_extra_and_binds_beyond_loopback() -> None:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "'.[serve]'" in text and "EXPOSE 8080 9090" in text
    assert '"serve", "--host", "0.0.0.0"' in text and "/healthz" in text
