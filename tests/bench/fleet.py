#!/usr/bin/env python3
"""The fleet tier benchmark (issue 14). Run it through `tests/bench/run.sh --fleet`, which
builds the binaries and the benchmark client and raises the open-file limit first.

Two scenarios, each printed as ratios against an anchor measured in the same run:

- l2: an L2 hit with a cold L1 (instance A fetches ids into Redis, instance B reads each once:
  every answer comes from Redis), latency p50/p99 per request; anchor: the L1 hit of the same
  instance B for the same ids, read again right after by the same client.
- herd: three instances, one Redis, the emulator with a fixed upstream delay; a herd of N
  simultaneous requests for one cold id spread over the three must cost exactly 1 upstream
  call, with a median within the upstream latency + 15 ms; anchor: the upstream latency
  measured directly (keep-alive TLS to the emulator) in the same run.

Everything listens on 127.0.0.1 on ports picked at run time; every loop is bounded in count
and time; every process started here is stopped by its PID on exit, Ctrl-C or failure.
"""

import argparse
import datetime
import http.client
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time

from bench import (ACCOUNT, IMAGE_PATH, ROOT, BenchError, Emulator, Imagegate, Processes,
                   free_port, load_keys, log, make_id, markdown_table, median, run_guarded,
                   run_json, width_for)

KEY_PREFIX = "imagegate"  # redis.key_prefix default; value keys are <prefix>:v1:{account:id}


def percentile(xs, p):
    """Nearest rank, as benchclient computes it."""
    xs = sorted(xs)
    if not xs:
        return None
    rank = min(len(xs), max(1, int(p / 100.0 * len(xs) + 0.999999)))
    return xs[rank - 1]


def cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat: finer than the 10 ms ticks of
    /proc/PID/stat, which a few thousand sub-millisecond requests cannot resolve)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
    except OSError:
        pass
    return total


FLEET_COUNTERS = ("l2_hits", "l2_misses", "l2_errors", "l2_skipped", "l2_writes",
                  "l2_write_errors", "l2_writes_dropped", "lease_wins", "lease_waits",
                  "lease_wait_hits", "lease_timeouts", "fill_events_received")


def fleet_counters(nodes):
    """The fleet tier's counters summed over nodes (what a herd or a fill did meanwhile)."""
    total = dict.fromkeys(FLEET_COUNTERS, 0)
    for node in nodes:
        m = node.metrics()
        for c in FLEET_COUNTERS:
            total[c] += int(m.get(f"imagegate_fleet_{c}_total", 0))
    return total


def counters_since(before, after):
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---------------------------------------------------------------------------------------------
# redis-server


class Redis:
    """One redis-server: loopback, a port picked at run time, no persistence, started with a
    config file in the scratch directory, stopped by its PID (Processes)."""

    def __init__(self, procs, scratch, cpu):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise BenchError("redis-server not found (Debian package redis-server)")
        for attempt in range(5):  # a port taken between free_port() and the bind: retry
            self.port = free_port()
            conf = os.path.join(scratch, "redis.conf")
            with open(conf, "w") as f:
                f.write(f"port {self.port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
                        f"dir {scratch}\nlogfile {os.path.join(scratch, 'redis.log')}\n")
            self.proc = procs.start("redis-server",
                                    ["taskset", "-c", str(cpu), self.binary, conf])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.command("PING") == "PONG":
                        self.version = self.command("INFO", "server").split(
                            "redis_version:")[1].split()[0]
                        return
                except OSError:
                    time.sleep(0.02)
            procs.stop(self.proc)
        raise BenchError("redis-server did not start; see build/bench/fleet-logs/redis.log")

    @staticmethod
    def _resp(args):
        out = f"*{len(args)}\r\n"
        for a in args:
            out += f"${len(a.encode())}\r\n{a}\r\n"
        return out.encode()

    def pipeline(self, commands):
        """Sends every command on one connection; returns each reply's first line (the value
        for simple strings and integers; bulk strings are read whole and returned)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(self._resp(c) for c in commands))
            f = s.makefile("rb")
            replies = []
            for _ in commands:
                line = f.readline().rstrip(b"\r\n").decode()
                if line.startswith("$") and line != "$-1":
                    line = f.read(int(line[1:]) + 2)[:-2].decode()
                elif line[:1] in "+:":
                    line = line[1:]
                replies.append(line)
            return replies

    def command(self, *args):
        return self.pipeline([list(args)])[0]

    def ping_ms(self, n, cpu):
        """n PINGs one after another on one connection, from `cpu` (the instances' CPU: the
        same hop as an L2 GET): what that loopback round trip costs on this machine right now,
        without imagegate (the floor under an L2 hit's latency)."""
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                times = []
                for _ in range(n):
                    t0 = time.perf_counter()
                    s.sendall(b"PING\r\n")
                    if not s.recv(64).startswith(b"+PONG"):
                        raise BenchError("redis-server did not answer PING")
                    times.append((time.perf_counter() - t0) * 1000.0)
            return times
        finally:
            os.sched_setaffinity(0, before)

    def value_keys_present(self, ids):
        keys = [f"{KEY_PREFIX}:v1:{{{ACCOUNT}:{i}}}" for i in ids]
        return sum(int(r) for r in self.pipeline([["EXISTS", k] for k in keys]))


# ---------------------------------------------------------------------------------------------
# the benchmark


class FleetBench:
    def __init__(self, args):
        self.args = args
        self.procs = Processes()
        self.run_id = secrets.token_hex(3)
        self.token = "bench-" + secrets.token_hex(12)
        self.scratch = os.path.join(ROOT, "build", "bench", "fleet-logs")
        self.l2_rows = []    # one per (round, conns)
        self.herds = []      # one per cold id
        self.anchor = {}     # upstream latency
        self.pings = []      # (p50, p99) of Redis PING round trips, one per L2 round
        self.loads = []      # (when, load average)

    def note_load(self, when):
        self.loads.append((when, load_average()))
        log(f"load average {self.loads[-1][1]} ({when})")

    def upstream_calls(self):
        return self.emu.counters()[0]

    def setup(self):
        a = self.args
        if os.path.isdir(self.scratch):
            shutil.rmtree(self.scratch)
        os.makedirs(self.scratch)
        log("starting redis-server, the emulator (TLS, --any-image) and 3 imagegate instances")
        self.redis = Redis(self.procs, self.scratch, a.client_cpu)
        self.emu = Emulator(self.procs, a, self.scratch, self.token)
        fleet_env = {
            "IMAGEGATE_REDIS_URL": f"redis://127.0.0.1:{self.redis.port}",
            "IMAGEGATE_FLEET_INSTANCES": "3",
            # With [redis] set, coalesce_timeout must cover max_queue_wait + request_timeout +
            # fleet.lease_timeout (5 s + 15 s + 5 s by default).
            "IMAGEGATE_SHIELD_COALESCE_TIMEOUT": "25s",
        }
        self.nodes = [Imagegate(self.procs, a, self.scratch, self.emu, self.token,
                                tag=f"imagegate-{n}", extra_env=fleet_env) for n in "abc"]
        for node in self.nodes:
            self.wait_fleet_ok(node)
        # One miss per instance: its upstream connection, its Redis connections and the budget
        # script are up before anything is measured.
        for k, node in enumerate(self.nodes):
            res = load_keys(a, node.port, f"warm-{self.run_id}-{k}-", 4, conns=2)
            if res["status"].get("200") != 4:
                raise BenchError(f"warm-up of imagegate-{'abc'[k]}: {res}")

    def wait_fleet_ok(self, node):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            c = http.client.HTTPConnection("127.0.0.1", node.admin_port, timeout=2)
            try:
                c.request("GET", "/readyz")
                if b'"fleet":"ok"' in c.getresponse().read():
                    return
            except OSError:
                pass
            finally:
                c.close()
            time.sleep(0.05)
        raise BenchError("an instance's /readyz never reported \"fleet\":\"ok\"")

    # -- L2 hit vs L1 hit

    def l2_pass(self, node, prefix, n, conns, what):
        """Reads the n ids of prefix once each through node; returns benchclient's answer
        plus the upstream calls, the node's L2 hits and its CPU µs per request meanwhile."""
        a = self.args
        calls0 = self.upstream_calls()
        fleet0 = fleet_counters([node])
        cpu0 = cpu_ns(node.pid)
        res = run_json(["taskset", "-c", str(a.client_cpu), a.benchclient, "load",
                        "--port", str(node.port), "--prefix", IMAGE_PATH + prefix,
                        "--width", str(width_for(prefix)), "--first", "1", "--n", str(n),
                        "--conns", str(conns), "--timeout-ms", "120000"], timeout=180)
        res["cpu_us"] = (cpu_ns(node.pid) - cpu0) / 1000.0 / max(1, res["done"])
        res["upstream"] = self.upstream_calls() - calls0
        res["fleet"] = counters_since(fleet0, fleet_counters([node]))
        res["l2_hits"] = res["fleet"].get("l2_hits", 0)
        want_hits = n if what == "l2" else 0
        if (res["done"] != n or res["status"].get("200") != n or res["upstream"] != 0
                or res["l2_hits"] != want_hits):
            raise BenchError(f"{what} pass ({conns} conns) was not all {what} hits: "
                             f"upstream calls {res['upstream']}, the reader's fleet counters "
                             f"{res['fleet']} (l2_errors, l2_skipped: Redis slower than "
                             f"redis.op_timeout, then the breaker open), {json.dumps(res)[:300]}")
        return res

    def l2(self):
        a = self.args
        filler, reader = self.nodes[0], self.nodes[1]
        for rnd in range(1, a.rounds + 1):
            for conns in a.l2_conns:
                prefix = f"l2-{self.run_id}-{rnd}-{conns}-"
                ids = [make_id(prefix, i) for i in range(1, a.l2_keys + 1)]
                calls0 = self.upstream_calls()
                fleet0 = fleet_counters([filler])
                load_keys(a, filler.port, prefix, a.l2_keys)
                fetched = self.upstream_calls() - calls0
                # The L2 write is in the background: wait until every value is in Redis.
                deadline = time.monotonic() + 30
                while self.redis.value_keys_present(ids) != len(ids):
                    if time.monotonic() > deadline:
                        raise BenchError(
                            f"only {self.redis.value_keys_present(ids)} of {len(ids)} values "
                            f"reached Redis; the filler's fleet counters meanwhile: "
                            f"{counters_since(fleet0, fleet_counters([filler]))}")
                    time.sleep(0.05)
                ping = self.redis.ping_ms(a.l2_keys, a.server_cpu)
                self.pings.append((percentile(ping, 50), percentile(ping, 99)))
                l2 = self.l2_pass(reader, prefix, a.l2_keys, conns, "l2")
                l1 = self.l2_pass(reader, prefix, a.l2_keys, conns, "l1")
                row = {"round": rnd, "conns": conns, "fill_upstream": fetched, "l2": l2, "l1": l1}
                self.l2_rows.append(row)
                log(f"round {rnd}, {conns} conn(s): L2 hit p50/p99 {l2['p50_ms']:.3f}/"
                    f"{l2['p99_ms']:.3f} ms ({l2['cpu_us']:.1f} µs CPU), L1 hit "
                    f"{l1['p50_ms']:.3f}/{l1['p99_ms']:.3f} ms ({l1['cpu_us']:.1f} µs CPU); "
                    f"Redis PING p50/p99 {self.pings[-1][0]:.3f}/{self.pings[-1][1]:.3f} ms; "
                    f"cache {l2['cache']} then {l1['cache']}")

    # -- the herd

    def measure_upstream(self):
        """The anchor: the emulator's latency with the delay fault, straight over one
        keep-alive TLS connection (no imagegate)."""
        a = self.args
        c = http.client.HTTPSConnection("127.0.0.1", self.emu.port, context=self.emu.ctx,
                                        timeout=10)
        times = []
        try:
            for i in range(a.upstream_samples + 1):
                t0 = time.perf_counter()
                c.request("GET", IMAGE_PATH + make_id(f"anchor-{self.run_id}-", i),
                          headers={"Authorization": f"Bearer {self.token}"})
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    raise BenchError(f"the emulator answered {r.status} to the anchor call")
                if i > 0:  # the first pays the TLS handshake
                    times.append((time.perf_counter() - t0) * 1000.0)
        finally:
            c.close()
        return times

    def one_miss(self, node, image):
        """One cold request alone through one instance (the herd's n = 1)."""
        res = run_json([self.args.benchclient, "herd", "--port", str(node.port),
                        "--target", IMAGE_PATH + image, "--n", "1", "--timeout-ms", "20000"],
                       timeout=60)
        if res["status"].get("200") != 1:
            raise BenchError(f"a single miss went wrong: {res}")
        return res["p50_ms"]  # from the request's write to its full answer

    def herd(self):
        a = self.args
        self.emu.add_fault({"kind": "delay", "delay_ms": a.upstream_ms})
        try:
            upstream = self.measure_upstream()
            self.anchor = {"samples": len(upstream), "p50": percentile(upstream, 50),
                           "p99": percentile(upstream, 99)}
            singles = [self.one_miss(self.nodes[k % 3], make_id(f"single-{self.run_id}-", k))
                       for k in range(a.upstream_samples // 4 or 1)]
            self.anchor["single_miss_p50"] = statistics.median(singles)
            log(f"upstream (delay fault {a.upstream_ms} ms) measured directly: p50 "
                f"{self.anchor['p50']:.2f} ms, p99 {self.anchor['p99']:.2f} ms; one miss alone "
                f"through an instance: {self.anchor['single_miss_p50']:.2f} ms")
            ports = ",".join(str(n.port) for n in self.nodes)
            for k in range(1, a.herd_keys + 1):
                image = make_id(f"herd-{self.run_id}-", k)
                calls0 = self.upstream_calls()
                fleet0 = fleet_counters(self.nodes)
                res = run_json(["taskset", "-c", str(a.client_cpu), a.benchclient, "herd",
                                "--port", ports, "--target", IMAGE_PATH + image,
                                "--n", str(a.herd_n), "--timeout-ms", "30000"], timeout=90)
                res["upstream"] = self.upstream_calls() - calls0
                time.sleep(0.2)  # the leader's background L2 write and event settle
                res["fleet"] = counters_since(fleet0, fleet_counters(self.nodes))
                res["id"] = k
                self.herds.append(res)
                log(f"herd {k}: {res['answered']}/{a.herd_n} answered, upstream calls "
                    f"{res['upstream']}, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
                    f"max {res['max_ms']:.2f} ms, status {res['status']}, cache {res['cache']}, "
                    f"p50 by cache {res['p50_ms_by_cache']}; fleet counters {res['fleet']}")
        finally:
            self.emu.clear_faults()

    # -- report

    def report(self):
        a = self.args
        out = []
        w = out.append
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        w(f"Fleet tier benchmark, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {rev}, "
          f"{os.cpu_count()} CPUs, Redis {self.redis.version}; instances on CPU "
          f"{a.server_cpu} (`--threads 1` each), Redis, the emulator and the client on CPU "
          f"{a.client_cpu}; load average (1/5/15 min): "
          + "; ".join(f"{v} ({k})" for k, v in self.loads) + ".")
        w("")
        targets = []
        if self.l2_rows:
            rows = []
            for conns in a.l2_conns:
                rs = [r for r in self.l2_rows if r["conns"] == conns]

                def med(path, rs=rs):
                    return median([r[path[0]][path[1]] for r in rs])

                l2p50, l2p99 = med(("l2", "p50_ms")), med(("l2", "p99_ms"))
                l1p50, l1p99 = med(("l1", "p50_ms")), med(("l1", "p99_ms"))
                spread99 = [r["l2"]["p99_ms"] for r in rs]
                rows.append([f"{conns}", f"{a.l2_keys} × {len(rs)}",
                             f"{l2p50:.3f} / {l2p99:.3f}", f"{l1p50:.3f} / {l1p99:.3f}",
                             f"{l2p50 / l1p50:.2f}× / {l2p99 / l1p99:.2f}×",
                             f"{min(spread99):.3f}–{max(spread99):.3f}",
                             f"{med(('l2', 'cpu_us')):.1f} / {med(('l1', 'cpu_us')):.1f}"])
                if conns != min(a.l2_conns):
                    continue  # more connections: queueing, shown above for information
                targets.append([f"L2 hit (L1 cold), {conns} conn(s): p99 < 1 ms",
                                f"{l2p99:.3f} ms (median of {len(rs)} rounds; rounds "
                                f"{min(spread99):.3f}–{max(spread99):.3f})", l2p99 < 1.0])
            w("L2 hit (instance B's L1 cold, the value in Redis) against the anchor, an L1 hit "
              "of the same instance for the same ids right after; medians over the rounds. "
              "The target applies to the fewest connections (a request's own latency); with "
              "more, the p99 includes waiting behind the other connections' requests:")
            w("")
            out.extend(markdown_table(["conns", "requests × rounds", "L2 hit p50 / p99 ms",
                              "L1 hit p50 / p99 ms (anchor)", "ratio p50 / p99",
                              "L2 p99 per round ms", "server CPU µs/request L2 / L1"], rows))
            w("")
            w(f"The floor, measured before each L2 pass: {a.l2_keys} Redis `PING`s one after "
              f"another over one loopback connection from the instances' CPU (the L2 GET's hop "
              f"without imagegate), "
              f"median over the passes p50 {median([p for p, _ in self.pings]):.3f} ms, p99 "
              f"{median([q for _, q in self.pings]):.3f} ms (passes "
              f"{min(q for _, q in self.pings):.3f}–{max(q for _, q in self.pings):.3f}). "
              f"An L2 hit makes two such cross-CPU round trips (client–instance, "
              f"instance–Redis), an L1 hit one: when this p99 is near 1 ms or above, the L2 "
              f"target cannot be judged on this machine at this moment.")
            w("")
        if self.herds:
            p50s = [h["p50_ms"] for h in self.herds]
            p99s = [h["p99_ms"] for h in self.herds]
            calls = [h["upstream"] for h in self.herds]
            answered = sum(h["status"].get("200", 0) for h in self.herds)
            limit = self.anchor["p50"] + 15.0
            rows = [[f"{h['id']}", f"{h['status'].get('200', 0)}/{a.herd_n}", f"{h['upstream']}",
                     f"{h['fleet'].get('lease_wins', 0)} / {h['fleet'].get('lease_waits', 0)} / "
                     f"{h['fleet'].get('lease_wait_hits', 0)}",
                     f"{h['p50_ms']:.2f} / {h['p99_ms']:.2f} / {h['max_ms']:.2f}",
                     f"{h['p50_ms'] / self.anchor['p50']:.2f}×",
                     ", ".join(f"{k}: {v} (p50 {h['p50_ms_by_cache'].get(k, -1):.1f})"
                               for k, v in sorted(h["cache"].items()))]
                    for h in self.herds]
            w(f"Herds: {a.herd_n} simultaneous requests for one cold id, connection i to "
              f"instance i mod 3, upstream delay fault {a.upstream_ms} ms. Anchor, measured "
              f"directly in this run: upstream p50 {self.anchor['p50']:.2f} ms, p99 "
              f"{self.anchor['p99']:.2f} ms ({self.anchor['samples']} calls over one keep-alive "
              f"TLS connection); one cold request alone through an instance "
              f"{self.anchor['single_miss_p50']:.2f} ms (median).")
            w("")
            out.extend(markdown_table(["herd", "200s", "upstream calls",
                                       "lease wins / waits / wait hits", "p50 / p99 / max ms",
                              "p50 / upstream p50", "Cache-Status: count (p50 ms)"], rows))
            w("")
            w(f"Over the {len(self.herds)} herds: herd p50 median {statistics.median(p50s):.2f} ms "
              f"(range {min(p50s):.2f}–{max(p50s):.2f}), herd p99 median "
              f"{statistics.median(p99s):.2f} ms (range {min(p99s):.2f}–{max(p99s):.2f}).")
            w("")
            targets.append([f"herd: exactly 1 upstream call per cold id, every request 200",
                            f"calls per herd {sorted(set(calls))}, {answered}/"
                            f"{a.herd_n * len(self.herds)} answered 200",
                            set(calls) == {1} and answered == a.herd_n * len(self.herds)])
            # Judged like the L2 rounds: the median over the runs (here the herds) of each
            # one's median. One herd's median swings by ±10 ms with where the scheduler puts
            # 600 wake-ups on a shared 2-core machine; how many herds are within on their own
            # is printed beside it.
            within = sum(1 for p in p50s if p <= limit)
            middle = statistics.median(p50s)
            targets.append([f"herd median ≤ upstream p50 + 15 ms ({limit:.2f} ms), median over "
                            f"the herds",
                            f"{middle:.2f} ms (median of the herd medians; {within} of "
                            f"{len(p50s)} herds within on their own)", middle <= limit])
        out.extend(markdown_table(["target", "measured", "result"],
                         [[t, m, "PASS" if ok else "FAIL"] for t, m, ok in targets]))
        text = "\n".join(out) + "\n"
        print("\n" + text)
        path = os.path.join(ROOT, "build", "bench", "fleet-results.md")
        with open(path, "w") as f:
            f.write(text)
            f.write("\n<details><summary>raw results</summary>\n\n```json\n")
            f.write(json.dumps({"l2": self.l2_rows, "herds": self.herds,
                                "anchor": self.anchor}, indent=1))
            f.write("\n```\n</details>\n")
        log(f"written to {os.path.relpath(path, ROOT)}")
        return all(ok for _, _, ok in targets)

    def run(self):
        a = self.args
        self.note_load("before")
        self.setup()
        if "l2" in a.only:
            self.l2()
            self.note_load("after the L2 rounds")
        if "herd" in a.only:
            self.herd()
            self.note_load("after the herds")
        return self.report()


def main():
    p = argparse.ArgumentParser(
        description="Fleet tier benchmark: L2 hit latency and a cold herd over 3 instances "
                    "(run it through tests/bench/run.sh --fleet)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 round, 500 ids, 3 herds of 150; numbers are not a "
                        "measurement")
    p.add_argument("--rounds", type=int, help="L2 rounds per connection count (default 3)")
    p.add_argument("--l2-keys", type=int, help="ids per L2 round (default 5000)")
    p.add_argument("--l2-conns", default="1,16",
                   help="comma list of client connections for the L2 rounds (default 1,16)")
    p.add_argument("--herd-n", type=int, help="simultaneous requests per herd (default 600)")
    p.add_argument("--herd-keys", type=int, help="cold ids, one herd each (default 10)")
    p.add_argument("--upstream-ms", type=int, default=50, help="upstream delay (default 50)")
    p.add_argument("--upstream-samples", type=int, default=40,
                   help="direct upstream calls of the anchor (default 40)")
    p.add_argument("--only", default="l2,herd", help="comma list of: l2,herd")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--emulator-cpu", type=int, default=1)
    p.add_argument("--cache-max-bytes", default="1GiB", help="imagegate --cache-max-bytes")
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"),
                   help="where the binaries are (default build/release)")
    p.add_argument("--no-build", action="store_true",
                   help="run.sh: do not run the cmake build first")
    a = p.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.l2_keys = a.l2_keys or (500 if a.quick else 5000)
    a.herd_n = a.herd_n or (150 if a.quick else 600)
    a.herd_keys = a.herd_keys or (3 if a.quick else 10)
    a.only = set(a.only.split(","))
    try:
        a.l2_conns = [int(c) for c in a.l2_conns.split(",")]
    except ValueError:
        p.error("--l2-conns takes a comma list of numbers")
    if not a.only <= {"l2", "herd"}:
        p.error("--only takes a comma list of l2,herd")
    if (not 1 <= a.rounds <= 20 or not 1 <= a.l2_keys <= 200_000 or not 1 <= a.herd_n <= 10000
            or not 1 <= a.herd_keys <= 100 or not 1 <= a.upstream_ms <= 5000
            or not 2 <= a.upstream_samples <= 1000
            or not all(1 <= c <= 1000 for c in a.l2_conns)):
        p.error("a count is out of range (see --help)")
    a.imagegate_bin = os.path.join(a.build_dir, "gateway", "imagegate")
    a.emulator_bin = os.path.join(a.build_dir, "tests", "emulator", "imagegate-emulator")
    a.benchclient = os.path.join(ROOT, "build", "bench", "benchclient")
    for f in (a.imagegate_bin, a.emulator_bin, a.benchclient):
        if not os.access(f, os.X_OK):
            p.error(f"missing executable {os.path.relpath(f, ROOT)} (run tests/bench/run.sh "
                    "--fleet)")

    bench = FleetBench(a)
    return run_guarded(bench.run, bench.procs)


if __name__ == "__main__":
    sys.exit(main())
