#!/usr/bin/env python3
"""deploy/k8s/sidecar.yaml and fleet.yaml: every object validated offline against the
Kubernetes API schemas (tests/deploy/k8s/validate.mjs, pinned kubernetes-models), then the
fields that make the deployment work asserted: the embedded imagegate.toml passes the built
binary's --check-config, probes hit /readyz and /healthz on the admin port the config
listens on, the token and password come from Secrets, memory requests and limits cover
PERFORMANCE.md's figures for the configured cache, every container is non-root with a
read-only root file system and no capabilities, and the fleet's Service, Redis and
NetworkPolicy fit together.

    k8s_test.py SOURCE_DIR BINARY
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

SOURCE = os.path.abspath(sys.argv[1])
BINARY = os.path.abspath(sys.argv[2])
VALIDATOR = os.path.join(SOURCE, "tests/deploy/k8s")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
IMAGE_UID = 10001  # deploy/container/Containerfile

# tests/bench/PERFORMANCE.md: a 591-byte record is charged body + 213 B and costs body + 217 B
# of RSS; idle RSS 10.6 MB; under eviction churn RSS reached 1.66 x cache.max_bytes + idle.
RECORD_BODY, CHARGED_EXTRA, RSS_EXTRA = 591, 213, 217
IDLE_RSS = 10.6e6
CHURN_FACTOR = (435.6 - 10.6) / 256

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"k8s_test: FAIL: {message}", file=sys.stderr)
    return condition


def load(name):
    with open(os.path.join(SOURCE, "deploy/k8s", name), encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}, docs


def quantity(q):
    """Kubernetes memory quantity -> bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", str(q))
    assert m, f"unsupported quantity {q}"
    scale = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6,
             "G": 10**9}
    return int(m.group(1)) * scale[m.group(2)]


def size(s):
    """imagegate size ("64MiB", "1MiB", 1024) -> bytes."""
    if isinstance(s, int):
        return s
    m = re.fullmatch(r"(\d+)(KiB|MiB|GiB|KB|MB|GB)?", s)
    scale = {None: 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "KB": 10**3,
             "MB": 10**6, "GB": 10**9}
    return int(m.group(1)) * scale[m.group(2)]


def seconds(d):
    m = re.fullmatch(r"(\d+)(ms|s|m)", d)
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def pod_spec(deployment):
    return deployment["spec"]["template"]["spec"]


def container(spec, name):
    found = [c for c in spec.get("containers", []) if c["name"] == name]
    check(len(found) == 1, f"no single container named {name}")
    return found[0] if found else {}


def config_of(objects, spec, c):
    """The imagegate.toml a container reads through --config, from its ConfigMap volume."""
    args = c.get("args", [])
    check(args[:1] == ["--config"] and len(args) == 2, f"{c['name']}: args {args}")
    path = args[1] if len(args) == 2 else ""
    mount = next((m for m in c.get("volumeMounts", [])
                  if path.startswith(m["mountPath"].rstrip("/") + "/")), None)
    if not check(mount is not None, f"{c['name']}: {path} is on no volume mount"):
        return {}, ""
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    check("configMap" in volume and mount.get("readOnly") is True,
          f"{c['name']}: the config is not a read-only ConfigMap mount")
    cm = objects.get(("ConfigMap", volume.get("configMap", {}).get("name")))
    key = os.path.relpath(path, mount["mountPath"])
    if not check(cm is not None and key in cm.get("data", {}), f"no ConfigMap key {key}"):
        return {}, ""
    text = cm["data"][key]
    return tomllib.loads(text), text


def check_config_passes(text, label):
    """The built binary's --check-config on the embedded TOML. A Redis password file the
    cluster provides at run time is stood in for by a mode-600 temporary file."""
    with tempfile.TemporaryDirectory() as d:
        secret = os.path.join(d, "redis-password")
        with open(secret, "w") as f:
            f.write("k8s-test-password\n")
        os.chmod(secret, 0o600)
        text = re.sub(r'(?m)^(\s*password_file\s*=\s*)".*"', rf'\1"{secret}"', text)
        config = os.path.join(d, "imagegate.toml")
        with open(config, "w") as f:
            f.write(text)
        r = subprocess.run([BINARY, "--config", config, "--check-config"], env=CLEAN_ENV,
                           capture_output=True, text=True)
    errors = [line for line in r.stderr.splitlines() if not line.endswith("see imagegate --help")]
    check(not errors and r.returncode == 0,
          f"{label}: --check-config exit {r.returncode}: {errors or r.stdout}")


def port_number(c, port):
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in c.get("ports", []) if p.get("name") == port]
    check(len(named) == 1, f"{c['name']}: no port named {port}")
    return named[0] if named else None


def check_imagegate_container(objects, spec, c, label):
    config, text = config_of(objects, spec, c)
    if text:
        check_config_passes(text, label)
    server = config.get("server", {})
    admin = server.get("admin_listen", "127.0.0.1:9090")
    check(admin.startswith("0.0.0.0:"), f"{label}: admin_listen {admin} is not reachable by "
                                        "the kubelet's probes")
    admin_port = int(admin.rsplit(":", 1)[1])
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path, f"{label}: {probe} path {get.get('path')}")
        check(port_number(c, get.get("port")) == admin_port,
              f"{label}: {probe} port is not the admin port {admin_port}")

    token = [e for e in c.get("env", []) if e["name"] == "CLOUDFLARE_API_TOKEN"]
    ref = token[0].get("valueFrom", {}).get("secretKeyRef", {}) if token else {}
    check(ref == {"name": "imagegate-token", "key": "token"},
          f"{label}: CLOUDFLARE_API_TOKEN is not from Secret imagegate-token/token: {token}")

    # Memory against PERFORMANCE.md, for this config's cache and upstream pool.
    cache = size(config.get("cache", {}).get("max_bytes", "256MiB"))
    upstream = config.get("upstream", {})
    in_flight = upstream.get("max_connections", 64) * size(upstream.get("max_body_bytes", "1MiB"))
    full_cache_rss = cache * (RECORD_BODY + RSS_EXTRA) / (RECORD_BODY + CHARGED_EXTRA)
    resources = c.get("resources", {})
    request = quantity(resources.get("requests", {}).get("memory", 0))
    limit = quantity(resources.get("limits", {}).get("memory", 0))
    need_request = full_cache_rss + IDLE_RSS
    need_limit = CHURN_FACTOR * cache + IDLE_RSS + in_flight
    check(request >= need_request,
          f"{label}: memory request {request >> 20} MiB < full cache + idle "
          f"{need_request / 2**20:.0f} MiB")
    check(limit >= need_limit,
          f"{label}: memory limit {limit >> 20} MiB < churn + idle + in-flight bodies "
          f"{need_limit / 2**20:.0f} MiB")
    check(limit <= 2 * need_limit, f"{label}: memory limit {limit >> 20} MiB is more than "
                                   f"twice the {need_limit / 2**20:.0f} MiB it needs")
    print(f"k8s_test: {label}: cache {cache >> 20} MiB -> request {request >> 20} Mi "
          f"(>= {need_request / 2**20:.0f}), limit {limit >> 20} Mi (>= {need_limit / 2**20:.0f})")

    drain = seconds(server.get("drain_timeout", "10s"))
    pause = sum(int(a) for a in c.get("lifecycle", {}).get("preStop", {}).get("exec", {})
                .get("command", [])[1:] if a.isdigit())
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace > drain + pause, f"{label}: terminationGracePeriodSeconds {grace} <= drain "
                                 f"{drain}s + preStop {pause}s")
    return config


def check_security(spec, label):
    pod = spec.get("securityContext", {})
    check(pod.get("seccompProfile", {}).get("type") == "RuntimeDefault",
          f"{label}: no RuntimeDefault seccomp profile")
    check(spec.get("automountServiceAccountToken") is False,
          f"{label}: the service account token is mounted")
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        sc = c.get("securityContext", {})
        name = f"{label}/{c['name']}"
        check(sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, f"{name}: may run as root")
        check(sc.get("readOnlyRootFilesystem") is True, f"{name}: writable root file system")
        check(sc.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities kept")
        check("memory" in c.get("resources", {}).get("requests", {}), f"{name}: no memory request")
        if "imagegate" in c.get("image", ""):
            uid = sc.get("runAsUser", pod.get("runAsUser"))
            check(uid == IMAGE_UID, f"{name}: runAsUser {uid}, the image's user is {IMAGE_UID}")
        for e in c.get("env", []):
            if re.search(r"TOKEN|PASSWORD|SECRET", e["name"]):
                check("value" not in e, f"{name}: {e['name']} is a literal, not a Secret")


def check_sidecar():
    objects, _ = load("sidecar.yaml")
    deployment = objects.get(("Deployment", "example-app"))
    if not check(deployment is not None, "sidecar.yaml: no Deployment example-app"):
        return
    spec = pod_spec(deployment)
    check_security(spec, "sidecar")
    app = container(spec, "app")
    gate = container(spec, "imagegate")
    config = check_imagegate_container(objects, spec, gate, "sidecar")
    listen = config.get("server", {}).get("listen", "127.0.0.1:8080")
    check(listen.startswith("127.0.0.1:"), f"sidecar: listen {listen} is not loopback")
    base = next((e.get("value") for e in app.get("env", [])
                 if e["name"] == "CLOUDFLARE_BASE_URL"), None)
    check(base == f"http://{listen}/client/v4", f"sidecar: the app's base URL {base} is not "
                                                f"imagegate's http://{listen}/client/v4")
    check(not any(p.get("containerPort") == int(listen.rsplit(":", 1)[1])
                  for p in gate.get("ports", [])), "sidecar: the loopback port is declared")


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_fleet():
    objects, _ = load("fleet.yaml")
    deployment = objects.get(("Deployment", "imagegate"))
    if not check(deployment is not None, "fleet.yaml: no Deployment imagegate"):
        return
    spec = pod_spec(deployment)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    check(deployment["spec"].get("replicas") == 3, "fleet: not 3 replicas")
    check_security(spec, "fleet")
    gate = container(spec, "imagegate")
    config = check_imagegate_container(objects, spec, gate, "fleet")

    service = objects.get(("Service", "imagegate"), {})
    check(selects(service.get("spec", {}).get("selector"), labels),
          "fleet: Service imagegate does not select the imagegate pods")
    listen_port = int(config.get("server", {}).get("listen", ":8080").rsplit(":", 1)[1])
    targets = [port_number(gate, p.get("targetPort")) for p in service["spec"]["ports"]]
    check(listen_port in targets, f"fleet: the Service does not reach listen port {listen_port}")

    # Redis: its Service is what redis.url names, without persistence.
    redis_cfg = config.get("redis", {})
    m = re.fullmatch(r"redis://([a-z0-9-]+):(\d+)", redis_cfg.get("url", ""))
    if check(m is not None, f"fleet: redis.url {redis_cfg.get('url')}"):
        redis_service = objects.get(("Service", m.group(1)))
        check(redis_service is not None, f"fleet: no Service {m.group(1)} for redis.url")
        redis = objects.get(("Deployment", "redis"))
        if check(redis is not None, "fleet: no Redis Deployment") and redis_service:
            rspec = pod_spec(redis)
            check_security(rspec, "fleet-redis")
            check(selects(redis_service["spec"]["selector"],
                          redis["spec"]["template"]["metadata"]["labels"]),
                  "fleet: Service redis does not select the Redis pod")
            check(int(m.group(2)) in [p["port"] for p in redis_service["spec"]["ports"]],
                  "fleet: the Redis Service does not expose redis.url's port")
            args = container(rspec, "redis").get("args", [])
            check(args[args.index("--save") + 1:][:1] == [""] if "--save" in args else False,
                  "fleet: Redis snapshots are not off (--save \"\")")
            check("--appendonly" in args and args[args.index("--appendonly") + 1] == "no",
                  "fleet: Redis AOF is not off")
            check(all("emptyDir" in v for v in rspec.get("volumes", [])),
                  "fleet: Redis has a persistent volume")
            password = [e for e in container(rspec, "redis").get("env", [])
                        if e["name"] == "REDIS_PASSWORD"]
            check(password and password[0]["valueFrom"]["secretKeyRef"] ==
                  {"name": "imagegate-redis", "key": "password"},
                  "fleet: Redis's password is not from Secret imagegate-redis/password")
    check(redis_cfg.get("key_prefix", "") != "", "fleet: no redis.key_prefix")
    check(config.get("fleet", {}).get("instances") == deployment["spec"]["replicas"],
          "fleet: fleet.instances differs from the replica count")

    # The password file: under a mount of the imagegate container, filled from the Secret.
    password_file = redis_cfg.get("password_file", "")
    mounts = [m for m in gate.get("volumeMounts", [])
              if password_file.startswith(m["mountPath"].rstrip("/") + "/")]
    check(len(mounts) == 1, f"fleet: redis.password_file {password_file} is on no mount")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    secret_volumes = [v for v in volumes.values()
                      if v.get("secret", {}).get("secretName") == "imagegate-redis"]
    check(len(secret_volumes) == 1, "fleet: Secret imagegate-redis is not mounted")
    init = spec.get("initContainers", [])
    check(any(password_file in c.get("command", []) and "0400" in c.get("command", [])
              for c in init), "fleet: no init container writes the password file mode 0400")

    # Anonymous callers only behind a NetworkPolicy that limits who reaches the data port.
    if config.get("auth", {}).get("allow_anonymous"):
        policies = [o for (kind, _), o in objects.items() if kind == "NetworkPolicy" and
                    selects(o["spec"]["podSelector"].get("matchLabels"), labels)]
        guarded = any(
            any(p.get("port") == listen_port for p in rule.get("ports", [])) and
            all(src.get("podSelector", {}).get("matchLabels") for src in rule.get("from", []))
            and rule.get("from")
            for policy in policies for rule in policy["spec"].get("ingress", []))
        check(guarded, "fleet: allow_anonymous without a NetworkPolicy limiting port "
                       f"{listen_port} to labelled pods")


def validate_schemas():
    node_modules = os.path.join(VALIDATOR, "node_modules", "kubernetes-models")
    if not check(os.path.isdir(node_modules),
                 "the schema validator is not installed; run: "
                 "bash deploy/install-deps.sh --with-deploy-tools"):
        return
    for name in ("sidecar.yaml", "fleet.yaml"):
        _, docs = load(name)
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(docs, f)
            f.flush()
            r = subprocess.run(["node", os.path.join(VALIDATOR, "validate.mjs"), f.name],
                               capture_output=True, text=True)
        check(r.returncode == 0, f"{name}: schema validation failed:\n{r.stderr}")
        print(f"k8s_test: {name}: {len(docs)} objects valid against the Kubernetes schemas")


def main():
    validate_schemas()
    check_sidecar()
    check_fleet()
    if failures:
        print(f"k8s_test: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("k8s_test: sidecar.yaml and fleet.yaml OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
