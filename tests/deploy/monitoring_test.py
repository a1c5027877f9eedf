#!/usr/bin/env python3
"""deploy/grafana/imagegate.json and deploy/prometheus/alerts.yaml against a live gateway:
every metric name used in a PromQL expression of either file (dashboard targets and its
template query, alert rules) must be a sample name on /metrics of the real binary running in
front of the in-repo emulator with the fleet tier on (a real redis-server, started by
tests/support's imagegate-test-redis on a free port), after a miss, a hit, a purge and a
reload. The alert rules must also pass `promtool check rules` (Debian's prometheus package;
deploy/install-deps.sh --with-deploy-tools installs it).

    monitoring_test.py SOURCE_DIR IMAGEGATE_BINARY EMULATOR_BINARY REDIS_HELPER
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from servers import (Children, StartError, http, start_emulator,  # noqa: E402
                     start_imagegate, wait_for)

SOURCE, BINARY, EMULATOR, REDIS_HELPER = (os.path.abspath(p) for p in sys.argv[1:5])
DASHBOARD = os.path.join(SOURCE, "deploy/grafana/imagegate.json")
ALERTS = os.path.join(SOURCE, "deploy/prometheus/alerts.yaml")
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
failures = []

# PromQL words that are not metric names: aggregation modifiers, set operators, and the
# label names inside by (...), without (...), on (...), ignoring (...), group_left/right (...)
# (those groups are removed before names are collected).
# Aggregation operators too: `sum by (x) (...)` leaves `sum` not followed by "(".
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "bool", "offset", "inf", "nan", "sum", "min", "max", "avg", "group",
            "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile"}


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"monitoring_test: FAIL: {message}", file=sys.stderr)
    return condition


def metric_names(expr):
    """The metric names an expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    e = re.sub(r"\$\{?\w+\}?", "", e)                     # Grafana variables
    e = re.sub(r"\{[^}]*\}", "", e)                       # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                      # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)
    e = re.sub(r"\boffset\s+\w+", "", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        word = m.group(0)
        if e[m.end():].lstrip().startswith("(") or word.lower() in KEYWORDS:
            continue  # a function, or a keyword
        if re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names


def dashboard_expressions(node):
    """Every PromQL text of a dashboard: targets' expr and label_values() template queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            elif key in ("query", "definition") and isinstance(value, str):
                m = re.fullmatch(r"\s*label_values\(\s*([^,]+),\s*\w+\s*\)\s*", value)
                if m:
                    yield m.group(1)
            else:
                yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_expressions(item)


def alert_expressions(doc):
    for group in doc.get("groups", []):
        for rule in group.get("rules", []):
            yield rule.get("alert") or rule.get("record"), rule["expr"]


def live_metric_names(scratch):
    """Runs a redis-server, the emulator and imagegate with `[redis]` (ports chosen at run
    time), sends a miss, a hit, a purge and a reload, and returns the sample names of
    /metrics."""
    token = "monitoring-test-token"
    admin_token = "monitoring-admin-token-0123"
    admin_file = os.path.join(scratch, "admin.token")
    with open(admin_file, "w") as f:
        f.write(admin_token + "\n")
    os.chmod(admin_file, 0o600)
    with Children() as children:
        # The helper prints the port once redis-server answers, and stops it (by PID) when
        # its stdin closes, i.e. when this process ends, however it ends.
        redis = children.start([REDIS_HELPER], pipe=True)
        redis_port = redis.stdout.readline().strip()
        if not check(redis_port.isdigit(), "redis-server did not start (imagegate-test-redis)"):
            return set()
        config = os.path.join(scratch, "gw.toml")
        with open(config, "w") as f:
            f.write(f'[admin]\ntoken_file = "{admin_file}"\n'
                    f'[redis]\nurl = "redis://127.0.0.1:{redis_port}"\n'
                    '[fleet]\ninstances = 2\n')
        try:
            emu_port, ca = start_emulator(children, EMULATOR, scratch, token, "--any-image")
            data, admin = start_imagegate(children, BINARY, scratch, token, config, emu_port, ca)
        except StartError as e:
            check(False, str(e))
            return set()
        path = f"/client/v4/accounts/{ACCOUNT}/images/v1/monitoring-1"
        check(http("GET", data, path)[0] == 200, "the miss was not answered 200")
        check(http("GET", data, path)[0] == 200, "the hit was not answered 200")
        connected = wait_for(lambda: "\nimagegate_fleet_degraded 0\n" in
                             http("GET", admin, "/metrics")[1])
        check(connected, "the gateway did not connect to redis-server")
        purge = f"/cache/accounts/{ACCOUNT}/images/monitoring-1"
        status, body = http("DELETE", admin, purge, admin_token)
        check(status in (200, 204), f"the purge answered {status}: {body}")
        status, body = http("POST", admin, "/config/reload", admin_token)
        check(status == 200, f"POST /config/reload answered {status}: {body}")
        status, text = http("GET", admin, "/metrics")
        check(status == 200, f"/metrics answered {status}")
        names = set()
        for line in text.splitlines():
            if line and not line.startswith("#"):
                names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
        return names


def main():
    with open(DASHBOARD, encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(ALERTS, encoding="utf-8") as f:
        alerts = yaml.safe_load(f)

    used = {}  # metric name -> where it is used
    for expr in dashboard_expressions(dashboard):
        for name in metric_names(expr):
            used.setdefault(name, set()).add("dashboard")
    rules = list(alert_expressions(alerts))
    check(len(rules) >= 5, f"only {len(rules)} alert rules")
    for alert, expr in rules:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(f"alert {alert}")
    check(len(used) >= 15, f"only {len(used)} metric names found; is the extraction broken?")
    for name in sorted(used):
        check(name.startswith("imagegate_"), f"{name} ({', '.join(sorted(used[name]))}) is not "
                                             "an imagegate metric")

    with tempfile.TemporaryDirectory() as scratch:
        live = live_metric_names(scratch)
    for name in sorted(used):
        check(name in live, f"{name} (used by {', '.join(sorted(used[name]))}) is not on "
                            "/metrics")

    promtool = shutil.which("promtool")
    if check(promtool is not None,
             "promtool is missing; run: bash deploy/install-deps.sh --with-deploy-tools"):
        r = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, text=True)
        check(r.returncode == 0, f"promtool check rules failed:\n{r.stdout}{r.stderr}")

    if failures:
        print(f"monitoring_test: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print(f"monitoring_test: {len(used)} metric names in {len(rules)} alert rules and the "
          f"dashboard, all on /metrics; promtool check rules passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
