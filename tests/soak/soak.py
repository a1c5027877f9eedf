#!/usr/bin/env python3
"""The shield soak: the real imagegate in front of the real emulator, which enforces a scaled
Cloudflare limit with a lockout, under a load of 10x the gateway's budget. Checks issue 12's
criteria and prints them; exit status 0 only if every run passes. Python 3 standard library.

Run through tests/soak/run.sh (it builds the binaries and the load client first).
"""
import argparse
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
import servers  # noqa: E402

ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
TOKEN = "soak-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


class Processes:
    """Every process the soak starts, stopped on exit, error or signal."""

    def __init__(self):
        self.procs = []

    def start(self, name, cmd, env, log):
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append((name, p))
        return p

    def stop_all(self):
        servers.stop_all([p for _, p in self.procs])
        self.procs.clear()


class CallSampler(threading.Thread):
    """Samples the emulator's API request counter every `period` seconds: (time, count).
    One kept-alive TLS connection: a handshake per sample would load the machine the soak
    measures."""

    def __init__(self, port, ctx, period):
        super().__init__(daemon=True)
        self.port, self.ctx, self.period = port, ctx, period
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        conn = None
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPSConnection("localhost", self.port, timeout=2,
                                                       context=self.ctx)
                conn.request("GET", "/__emulator/stats")
                body = conn.getresponse().read()
                self.samples.append((t, json.loads(body)["requests"]))
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None
            self.stop.wait(self.period)
        if conn is not None:
            conn.close()


def exact_calls(base):
    """Every API call's time in seconds, from the emulator's call log (/__emulator/calls:
    "accepted" and "limited" lists of milliseconds since its start); None when the log is
    unavailable or dropped entries (then the sampled counter is the check)."""
    try:
        status, body = http_get(base + "/__emulator/calls", timeout=5)
    except OSError:
        return None
    if status != 200:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("dropped", 1) != 0:
        return None
    times = []
    for name in ("accepted", "limited"):
        items = data.get(name)
        if not isinstance(items, list):
            return None
        for value in items:
            if not isinstance(value, (int, float)):
                return None
            times.append(float(value) / 1000.0)
    return sorted(times) if times else None


def worst_window_exact(times, length):
    best, end = 0, 0
    for begin in range(len(times)):
        while end < len(times) and times[end] - times[begin] <= length:
            end += 1
        best = max(best, end - begin)
    return best


def window_violations(samples, burst, rate, slack):
    """Every pair of samples: the calls between them happened within their distance, so the
    GCRA bound for that length applies. Returns (worst excess, its window)."""
    worst = (-1e9, None)
    for i in range(len(samples)):
        ti, ci = samples[i]
        for j in range(i + 1, len(samples)):
            tj, cj = samples[j]
            allowed = burst + rate * (tj - ti) + slack
            excess = (cj - ci) - allowed
            if excess > worst[0]:
                worst = (excess, (tj - ti, cj - ci, allowed))
    return worst


def write_config(path, port, admin, upstream_port, ca, a):
    with open(path, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
threads = {a.threads}
[upstream]
url = "https://localhost:{upstream_port}/client/v4"
ca_file = "{ca}"
request_timeout = "5s"
[shield]
budget = {a.budget}
window = "{a.window}s"
burst = {a.burst}
max_queue_wait = "{a.queue_wait}s"
coalesce_timeout = "{a.queue_wait + 5 + 1}s"
[log]
level = "warn"
access_log = false
""")


def one_run(a, n, bins, logdir):
    procs = Processes()
    scratch = tempfile.mkdtemp(prefix="imagegate-soak-")
    try:
        port_file = os.path.join(scratch, "emulator.port")
        ca = os.path.join(scratch, "ca.pem")
        env = dict(os.environ, EMULATOR_TOKEN=TOKEN)
        emu_log = open(os.path.join(logdir, f"emulator-{n}.log"), "w")
        procs.start("emulator", [bins["emulator"], "--listen", "127.0.0.1:0", "--port-file",
                                 port_file, "--write-ca", ca, "--any-image",
                                 "--rate-limit", str(a.limit), "--rate-window", str(a.window),
                                 "--block", str(a.lockout), "--limiter", "sliding",
                                 "--threads", "1"], env, emu_log)
        for _ in range(200):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        upstream_port = int(open(port_file).read().strip())
        emu_base = f"https://localhost:{upstream_port}"
        port, admin = free_port(), free_port()
        cfg = os.path.join(scratch, "imagegate.toml")
        write_config(cfg, port, admin, upstream_port, ca, a)
        gw_env = dict(os.environ, CLOUDFLARE_API_TOKEN=TOKEN)
        gw_log = open(os.path.join(logdir, f"imagegate-{n}.log"), "w")
        procs.start("imagegate", [bins["imagegate"], "--config", cfg], gw_env, gw_log)
        for _ in range(200):
            try:
                if http_get(f"http://127.0.0.1:{admin}/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        # The emulator's control endpoints speak TLS with the test CA.
        ctx = ssl.create_default_context(cafile=ca)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx))
        urllib.request.install_opener(opener)
        sampler = CallSampler(upstream_port, ctx, a.sample_period)
        sampler.start()
        client = subprocess.run(
            [bins["client"], "--port", str(port), "--account", ACCOUNT,
             "--prefix", f"soak{n}-{int(time.time())}", "--users", str(a.users),
             "--think-ms", str(a.think_ms), "--hot-keys", str(a.hot_keys),
             "--hot-rate", str(a.hot_rate), "--hot-conns", str(a.hot_conns),
             "--baseline-s", str(a.baseline), "--duration-s", str(a.duration),
             "--drain-s", str(a.drain)],
            capture_output=True, text=True,
            timeout=2 * a.baseline + a.duration + a.drain + 120)
        sampler.stop.set()
        sampler.join()
        if client.returncode != 0:
            raise RuntimeError(f"soakclient failed: {client.stderr}")
        load = json.loads(client.stdout.strip().splitlines()[-1])
        _, stats_body = http_get(emu_base + "/__emulator/stats")
        emu = json.loads(stats_body)
        _, metrics = http_get(f"http://127.0.0.1:{admin}/metrics")
        calls = exact_calls(emu_base)
        return judge(a, load, emu, sampler.samples, calls, metrics)
    finally:
        procs.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def judge(a, load, emu, samples, calls, metrics):
    rate = a.budget / a.window
    cold = {int(k): v for k, v in load["cold_status"].items()}
    refused = cold.get(429, 0)
    checks = []

    def check(name, ok, detail):
        checks.append((name, bool(ok), detail))

    upstream_429 = emu.get("by_status", {}).get("429", 0)
    check("0 upstream 429s", emu["tripped"] == 0 and upstream_429 == 0,
          f"tripped {emu['tripped']}, 429 answers {upstream_429}")
    if calls is not None:
        worst = max(worst_window_exact(calls, L) - (a.burst + rate * L)
                    for L in (1, 5, 10, a.window, 60))
        check("calls <= burst + rate x length, every window (exact)", worst <= 1,
              f"{len(calls)} calls, worst window {worst:+.1f} vs the bound")
    else:
        excess, where = window_violations(samples, a.burst, rate, 1)
        length, n, allowed = where if where else (0, 0, 0)
        check("calls <= burst + rate x length, every window (sampled)", excess <= 0,
              f"{len(samples)} samples every {a.sample_period}s; tightest: {n} calls in "
              f"{length:.1f}s, allowed {allowed:.1f}")
    rl = load["refusal_latency"]
    check("refused clients: 429 + Retry-After in < 50 ms at p99",
          refused > 0 and rl["p99_us"] < 50_000 and load["refusals_without_retry_after"] == 0,
          f"{refused} refusals, p50 {rl['p50_us'] / 1000:.1f} ms, "
          f"p99 {rl['p99_us'] / 1000:.1f} ms, max {rl['max_us'] / 1000:.1f} ms, "
          f"{load['refusals_without_retry_after']} without Retry-After")
    answered_504 = cold.get(504, 0) + load["hot_status"].get("504", 0)
    check("0 answers of 504", answered_504 == 0, f"{answered_504} x 504")
    returns, ok = load["returns"], load["returns_ok"]
    share = ok / returns if returns else 0
    check("returns after Retry-After get 200 in >= 90 %", returns > 0 and share >= 0.9,
          f"{ok} of {returns} ({100 * share:.1f} %)")
    base, soak = load["hit_baseline"], load["hit_soak"]
    check("hit p99 under the soak <= 2x unloaded",
          base["n"] > 0 and soak["n"] > 0 and soak["p99_us"] <= 2 * base["p99_us"],
          f"unloaded (before and after) p50 {base['p50_us']} us, p99 {base['p99_us']} us "
          f"(n {base['n']}); soak p50 {soak['p50_us']} us, p99 {soak['p99_us']} us "
          f"(n {soak['n']})")
    offered = a.users * 1000 / a.think_ms
    facts = {
        "offered cold requests/s (unthrottled)": f"{offered:.1f} ({offered / rate:.0f}x the "
                                                 f"budget of {rate:g}/s)",
        "hot requests/s": f"{a.hot_rate:g}",
        "soak + drain (s)": f"{load['soak_s']:.1f}",
        "cold answers": json.dumps(load["cold_status"]),
        "ids started / answered": f"{load['ids_started']} / {load['ids_answered']}",
        "upstream calls": str(emu["requests"]),
        "cold 200 latency p50/p99 (ms)": f"{load['cold_ok_latency']['p50_us'] / 1000:.1f} / "
                                         f"{load['cold_ok_latency']['p99_us'] / 1000:.1f}",
        "gateway refusals queue_full / held": "{} / {}".format(
            metric(metrics, 'imagegate_budget_refusals_total{reason="queue_full"}'),
            metric(metrics, 'imagegate_budget_refusals_total{reason="held"}')),
        "gateway reservations now / queued / held": "{} / {} / {}".format(
            metric(metrics, 'imagegate_budget_reservations_total{outcome="now"}'),
            metric(metrics, 'imagegate_budget_reservations_total{outcome="queued"}'),
            metric(metrics, 'imagegate_budget_reservations_total{outcome="held"}')),
    }
    return checks, facts


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--build-dir", default="build/ci")
    p.add_argument("--client", default="build/soak/soakclient")
    p.add_argument("--runs", type=int, default=3, help="consecutive runs that must all pass")
    p.add_argument("--duration", type=int, default=60, help="seconds of overload")
    p.add_argument("--baseline", type=int, default=10,
                   help="seconds of hits alone, before the overload and again after it")
    p.add_argument("--drain", type=int, default=75, help="seconds for the last returns")
    p.add_argument("--limit", type=int, default=120, help="emulator: calls per window")
    p.add_argument("--window", type=int, default=30, help="emulator and budget window (s)")
    p.add_argument("--lockout", type=int, default=30, help="emulator: block after the limit (s)")
    p.add_argument("--budget", type=int, default=60, help="gateway: calls per window")
    p.add_argument("--burst", type=int, default=10)
    p.add_argument("--queue-wait", type=int, default=2, help="shield.max_queue_wait (s)")
    p.add_argument("--users", type=int, default=20, help="cold users (each a new id per think)")
    p.add_argument("--think-ms", type=int, default=1000)
    p.add_argument("--hot-keys", type=int, default=8)
    p.add_argument("--hot-rate", type=float, default=200)
    p.add_argument("--hot-conns", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="imagegate server.threads")
    p.add_argument("--sample-period", type=float, default=0.1)
    p.add_argument("--out", default="build/soak/results.md")
    a = p.parse_args()
    bins = {"imagegate": os.path.join(a.build_dir, "gateway/imagegate"),
            "emulator": os.path.join(a.build_dir, "tests/emulator/imagegate-emulator"),
            "client": a.client}
    logdir = os.path.join(os.path.dirname(a.out), "logs")
    os.makedirs(logdir, exist_ok=True)
    lines = [f"# Shield soak: {a.runs} run(s)", "",
             f"emulator limit {a.limit}/{a.window}s, lockout {a.lockout}s; gateway budget "
             f"{a.budget}/{a.window}s burst {a.burst}, max_queue_wait {a.queue_wait}s; "
             f"{a.users} users thinking {a.think_ms} ms, {a.hot_rate:g} hits/s; "
             f"{a.duration}s of overload.", ""]
    passed_all = True
    for n in range(1, a.runs + 1):
        print(f"[soak] run {n}/{a.runs} ({2 * a.baseline + a.duration}s + drain)", flush=True)
        checks, facts = one_run(a, n, bins, logdir)
        passed = all(ok for _, ok, _ in checks)
        passed_all &= passed
        lines += [f"## Run {n}: {'PASS' if passed else 'FAIL'}", "", "| criterion | result | figures |",
                  "|---|---|---|"]
        lines += [f"| {name} | {'PASS' if ok else 'FAIL'} | {detail} |" for name, ok, detail in checks]
        lines += ["", "| fact | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in facts.items()]
        lines.append("")
        print("\n".join(lines[-(len(checks) + len(facts) + 7):]), flush=True)
    lines.append(f"**{'ALL PASS' if passed_all else 'FAILED'}**")
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"[soak] {'ALL PASS' if passed_all else 'FAILED'}; written to {a.out}")
    return 0 if passed_all else 1


if __name__ == "__main__":
    sys.exit(main())
