#!/usr/bin/env python3
"""imagegate vs nginx proxy_cache benchmark. Run it through tests/bench/run.sh, which installs
wrk and nginx, builds the binaries and raises the open-file limit first.

Everything listens on 127.0.0.1 on ports picked at run time; every loop is bounded in count
and time; every process started here is stopped on exit, Ctrl-C or failure.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
IMAGE_PATH = f"/client/v4/accounts/{ACCOUNT}/images/v1/"
TTL = "5m"  # imagegate --ttl and nginx proxy_cache_valid 200
TTL_SECONDS = 300
# Every image id is ID_LEN characters (a prefix plus a zero-padded counter), like the 36-char
# UUIDs Cloudflare assigns. The emulator's --any-image record repeats the id four times
# (id and three variant URLs), so this gives the ~600-byte body the targets assume.
ID_LEN = 40


def width_for(id_prefix):
    """Digits of the counter that make id_prefix + counter ID_LEN characters."""
    return max(8, ID_LEN - len(id_prefix))


def make_id(id_prefix, i):
    return f"{id_prefix}{i:0{width_for(id_prefix)}d}"


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# processes


class Processes:
    """Every child started by the benchmark; stop_all() ends them, newest first."""

    def __init__(self):
        self.procs = []  # (name, Popen)

    def start(self, name, cmd, env=None, stdout=None, stderr=None):
        p = subprocess.Popen(cmd, env=env, stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append((name, p))
        return p

    def stop(self, p, grace=10.0):
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass
        self.procs = [(n, q) for (n, q) in self.procs if q is not p]

    def stop_all(self):
        for _, p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep stopping the others
                print(f"bench: could not stop pid {p.pid}: {e}", file=sys.stderr)

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise BenchError(f"{name} exited with status {p.returncode}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def cpu_seconds(pid):
    """utime + stime of one process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def nginx_rss_kib(master_pid):
    """VmRSS of the nginx master and its children (worker, cache manager, cache loader)."""
    return rss_kib(master_pid) + sum(rss_kib(c) for c in children_of(master_pid))


def http_get(port, path, timeout=5.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------
# the emulator (upstream)


class Emulator:
    def __init__(self, procs, args, scratch, token):
        self.procs = procs
        self.scratch = scratch
        self.ca = os.path.join(scratch, "test-ca.pem")
        port_file = os.path.join(scratch, "emulator.port")
        cmd = ["taskset", "-c", str(args.emulator_cpu), args.emulator_bin,
               "--listen", "127.0.0.1:0", "--port-file", port_file, "--write-ca", self.ca,
               "--any-image", "--rate-limit", "1000000000", "--rate-window", "1",
               "--threads", "1"]
        env = dict(os.environ, EMULATOR_TOKEN=token)
        self.log = open(os.path.join(scratch, "emulator.log"), "wb")
        self.proc = procs.start("emulator", cmd, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 15
        self.port = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("emulator exited at start; see build/bench/logs/emulator.log")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text and os.path.exists(self.ca):
                    self.port = int(text)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        if self.port is None:
            raise BenchError("emulator did not write its port within 15 s")
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def _call(self, method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
            if r.status != 200:
                raise BenchError(f"emulator {method} {path}: {r.status} {data[:200]!r}")
            return json.loads(data)
        finally:
            c.close()

    def cpu_seconds(self):
        return cpu_seconds(self.proc.pid)

    def counters(self):
        """(API requests, connections accepted) so far."""
        st = self._call("GET", "/__emulator/stats")
        return int(st["requests"]), int(st["connections_accepted"])

    def add_fault(self, rule):
        self._call("POST", "/__emulator/faults", json.dumps(rule))

    def clear_faults(self):
        self._call("DELETE", "/__emulator/faults")


# ---------------------------------------------------------------------------------------------
# the two servers under test


class Imagegate:
    name = "imagegate"

    def __init__(self, procs, args, scratch, emulator, token, tag="imagegate", log_level="warn",
                 default_log=False, extra_env=None):
        self.procs = procs
        self.port = free_port()
        self.admin_port = free_port()
        cmd = ["taskset", "-c", str(args.server_cpu), args.imagegate_bin,
               "--listen", f"127.0.0.1:{self.port}",
               "--admin-listen", f"127.0.0.1:{self.admin_port}",
               "--upstream", f"https://localhost:{emulator.port}/client/v4",
               "--upstream-ca", emulator.ca,
               "--threads", "1", "--ttl", TTL, "--cache-max-bytes", args.cache_max_bytes,
               "--log-level", log_level]
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGEGATE_")}
        env.update({
            "CLOUDFLARE_API_TOKEN": token,
            # default_log: the shipped [log] defaults (info, access log on, 1 in 100 hits).
            "IMAGEGATE_LOG_ACCESS_LOG": "true" if default_log else "false",
            # All-miss runs need far more than the production budget (1000 per 5 min).
            "IMAGEGATE_SHIELD_BUDGET": "100000000",
            "IMAGEGATE_SHIELD_WINDOW": "1s",
            "IMAGEGATE_SHIELD_BURST": "1000000",
        })
        env.update(extra_env or {})  # e.g. the [redis] and [fleet] keys of fleet.py
        self.log = open(os.path.join(scratch, f"{tag}.log"), "wb")
        self.t0 = time.perf_counter()
        self.proc = procs.start(tag, cmd, env=env, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        self.ready_ms = self.wait_ready()

    def wait_ready(self, limit_s=15.0):
        """Polls GET /readyz in a tight loop; returns ms from exec to the first 200."""
        req = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        deadline = self.t0 + limit_s
        while time.perf_counter() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.admin_port), timeout=1) as s:
                    s.sendall(req)
                    data = s.recv(64)
                    if data.startswith(b"HTTP/1.1 200"):
                        return (time.perf_counter() - self.t0) * 1000.0
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise BenchError("imagegate exited at start; see build/bench/logs/")
            time.sleep(0.0002)
        raise BenchError("imagegate not ready within 15 s")

    def rss_kib(self):
        return rss_kib(self.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def metrics(self):
        status, _, body = http_get(self.admin_port, "/metrics")
        out = {}
        if status == 200:
            for line in body.decode().splitlines():
                if line and not line.startswith("#"):
                    parts = line.split()
                    if len(parts) == 2:
                        try:
                            out[parts[0]] = float(parts[1])
                        except ValueError:
                            pass
        return out


NGINX_CONF = """\
# Generated by tests/bench/bench.py for one benchmark run; not a system configuration.
worker_processes 1;
daemon off;
master_process on;
{user}
pid {scratch}/nginx.pid;
error_log {scratch}/nginx-error.log warn;
worker_rlimit_nofile 16384;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    client_body_temp_path {scratch}/client_body;
    proxy_temp_path {scratch}/proxy_temp;
    fastcgi_temp_path {scratch}/fastcgi_temp;
    uwsgi_temp_path {scratch}/uwsgi_temp;
    scgi_temp_path {scratch}/scgi_temp;
    keepalive_requests 1000000;
    proxy_cache_path {cache_dir} levels=1:2 keys_zone=images:256m max_size=8g inactive=1h
                     use_temp_path=off;
    upstream emulator {{
        server 127.0.0.1:{emulator_port};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass https://emulator;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
            proxy_cache images;
            proxy_cache_lock on;
            proxy_cache_valid 200 {ttl};
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
            proxy_hide_header Set-Cookie;
            add_header Cache-Status $upstream_cache_status;
        }}
    }}
}}
"""


class Nginx:
    name = "nginx"

    def __init__(self, procs, args, scratch, emulator, token, cache_dir):
        self.procs = procs
        self.port = free_port()
        for sub in ("client_body", "proxy_temp", "fastcgi_temp", "uwsgi_temp", "scgi_temp"):
            os.makedirs(os.path.join(scratch, sub), exist_ok=True)
        os.makedirs(cache_dir, exist_ok=True)
        user = ""
        if os.geteuid() == 0:
            # As root nginx would switch its worker to "nobody", which cannot write the cache.
            user = "user root root;"
        conf = os.path.join(scratch, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(user=user, scratch=scratch, cache_dir=cache_dir,
                                      emulator_port=emulator.port, port=self.port,
                                      ca=emulator.ca, token=token, ttl=TTL))
        self.log = open(os.path.join(scratch, "nginx.log"), "wb")
        cmd = ["taskset", "-c", str(args.server_cpu), args.nginx_bin, "-p", scratch, "-c", conf,
               "-e", os.path.join(scratch, "nginx-error.log")]
        self.proc = procs.start("nginx", cmd, stdout=self.log, stderr=self.log)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("nginx exited at start; see build/bench/logs/nginx-error.log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.02)
        raise BenchError("nginx did not listen within 15 s")

    def rss_kib(self):
        return nginx_rss_kib(self.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.pid) + sum(cpu_seconds(c) for c in children_of(self.pid))


# ---------------------------------------------------------------------------------------------
# clients


def run_json(cmd, timeout):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise BenchError(f"{cmd[0]} failed ({out.returncode}): {out.stderr.strip()[:300]}")
    return json.loads(out.stdout)


def load_keys(args, port, id_prefix, n, first=1, conns=16):
    """Requests make_id(id_prefix, i) for i in [first, first+n) exactly once each."""
    res = run_json([args.benchclient, "load", "--port", str(port),
                    "--prefix", IMAGE_PATH + id_prefix, "--width", str(width_for(id_prefix)),
                    "--first", str(first), "--n", str(n), "--conns", str(conns),
                    "--timeout-ms", str(int(max(60, n / 200) * 1000))],
                   timeout=max(90, n / 200 + 30))
    if res["done"] != n or res["status"].get("200", 0) != n:
        raise BenchError(f"loading {n} keys on port {port} went wrong: {res}")
    return res


UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    r = {"rps": None, "p50": None, "p99": None, "requests": 0, "non2xx": 0, "errors": 0}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        r["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            r[key] = float(m.group(1)) * UNIT[m.group(2)]
    m = re.search(r"(\d+) requests in", text)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["errors"] = sum(int(x) for x in m.groups())
    return r


def run_wrk(args, port, conns, duration, path, script=None, script_args=()):
    cmd = ["taskset", "-c", str(args.client_cpu), args.wrk_bin, "-t1", f"-c{conns}",
           f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", os.path.join(HERE, script)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    if script_args:
        cmd += ["--"] + list(script_args)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = parse_wrk(out.stdout)
    # wrk's own CPU time (the only child that ends meanwhile): the client's share of its core.
    r["client_cpu_s"] = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    if out.returncode != 0 or r["rps"] is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-300:]}")
    return r


# ---------------------------------------------------------------------------------------------
# scenarios


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs = Processes()
        self.run_id = secrets.token_hex(3)
        self.token = "bench-" + secrets.token_hex(12)
        self.scratch = os.path.join(ROOT, "build", "bench", "logs")
        self.cache_dir = os.path.join("/dev/shm", f"imagegate-bench-{os.getpid()}")
        self.rows = []      # scenario rows
        self.rounds = []    # raw per-round rows
        self.extra = {}     # herd, start-up, memory results
        self.notes = []

    # -- helpers

    def check(self):
        self.procs.check_alive()

    def upstream_calls(self, fn):
        """Runs fn(); returns its result, the upstream API calls and the upstream connections
        opened meanwhile (the stats calls themselves count as connections; subtracted)."""
        calls0, conns0 = self.emu.counters()
        result = fn()
        calls1, conns1 = self.emu.counters()
        self.last_upstream_conns = conns1 - conns0 - 1
        return result, calls1 - calls0

    # -- phases

    def setup(self):
        if os.path.isdir(self.scratch):
            shutil.rmtree(self.scratch)
        os.makedirs(self.scratch)
        log("starting the emulator (TLS, --any-image)")
        self.emu = Emulator(self.procs, self.args, self.scratch, self.token)

    def startup_and_idle(self):
        a = self.args
        times, rss = [], []
        for i in range(a.startup_trials):
            ig = Imagegate(self.procs, a, self.scratch, self.emu, self.token, tag=f"startup-{i}",
                           log_level="info")
            times.append(ig.ready_ms)
            time.sleep(0.3)
            rss.append(ig.rss_kib())
            self.procs.stop(ig.proc)
        self.extra["startup_ms"] = times
        self.extra["idle_rss_kib"] = rss
        log(f"start-up to ready: {', '.join(f'{t:.1f}' for t in times)} ms; "
            f"idle RSS {', '.join(str(r) for r in rss)} KiB")

    def start_servers(self):
        log("starting nginx (proxy_cache) and imagegate")
        self.ng = Nginx(self.procs, self.args, self.scratch, self.emu, self.token, self.cache_dir)
        self.ig = Imagegate(self.procs, self.args, self.scratch, self.emu, self.token)
        # One request each: both reach the emulator and answer 200.
        for srv in (self.ng, self.ig):
            status, headers, body = http_get(srv.port, IMAGE_PATH + make_id("probe-", 1))
            if status != 200:
                raise BenchError(f"{srv.name} probe answered {status}: {body[:300]!r}")
        status, headers, body = http_get(self.ig.port, IMAGE_PATH + make_id("probe-", 1))
        self.body_bytes = len(body)
        self.extra["probe_cache_status"] = headers.get("cache-status", "")
        log(f"probe ok: body {self.body_bytes} bytes; second imagegate answer "
            f"Cache-Status: {headers.get('cache-status', '')}")

    def scenario(self, key, label, kind, conns, keys=0):
        a = self.args
        servers = (self.ng, self.ig)
        id_prefix = f"{key}-{self.run_id}-"
        if kind == "hit":
            log(f"{label}: warming {keys} key(s) on both servers")
            for srv in servers:
                load_keys(a, srv.port, id_prefix, keys)
        per = {s.name: [] for s in servers}
        calls = {s.name: 0 for s in servers}
        for rnd in range(1, a.rounds + 1):
            for srv in servers:
                self.check()
                first = IMAGE_PATH + make_id(id_prefix, 1)
                if kind == "hit" and keys == 1:
                    fn = lambda: run_wrk(a, srv.port, conns, a.duration, first)
                elif kind == "hit":
                    fn = lambda: run_wrk(a, srv.port, conns, a.duration, first, "multikey.lua",
                                         (IMAGE_PATH + id_prefix, str(keys),
                                          str(width_for(id_prefix))))
                else:
                    miss_prefix = f"{id_prefix}{srv.name[:2]}-r{rnd}-"
                    fn = lambda: run_wrk(a, srv.port, conns, a.duration, first, "allmiss.lua",
                                         (IMAGE_PATH + miss_prefix,
                                          str(width_for(miss_prefix))))
                cpu0, emu0, t0 = srv.cpu_seconds(), self.emu.cpu_seconds(), time.monotonic()
                r, n = self.upstream_calls(fn)
                used = srv.cpu_seconds() - cpu0
                emu_used = self.emu.cpu_seconds() - emu0
                r["cpu"] = used / (time.monotonic() - t0)
                # CPU time per request: what a request costs the server, whether or not the
                # server was the bottleneck of the run (in all-miss the shared client CPU is).
                r["cpu_us"] = used / r["requests"] * 1e6 if r["requests"] else 0.0
                # What the same request cost the client and the upstream (CPU 1 in all-miss).
                r["client_cpu_us"] = (r["client_cpu_s"] / r["requests"] * 1e6
                                      if r["requests"] else 0.0)
                r["emu_cpu_us"] = emu_used / r["requests"] * 1e6 if r["requests"] else 0.0
                r["upstream"] = n
                r["upstream_conns"] = self.last_upstream_conns
                per[srv.name].append(r)
                calls[srv.name] += n
                self.rounds.append((label, rnd, srv.name, r))
                log(f"{label} round {rnd} {srv.name:9s}: {r['rps']:>10.0f} req/s  "
                    f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  upstream {n} "
                    f"({r['upstream_conns']} new conns), server CPU {r['cpu'] * 100:.0f}%, "
                    f"CPU µs/req server {r['cpu_us']:.1f} wrk {r['client_cpu_us']:.1f} "
                    f"emulator {r['emu_cpu_us']:.1f}"
                    + (f"  non-2xx {r['non2xx']}" if r["non2xx"] else "")
                    + (f"  socket errors {r['errors']}" if r["errors"] else ""))
                time.sleep(0.5)
        row = {"key": key, "label": label, "kind": kind, "conns": conns}
        for s in servers:
            row[s.name] = {
                "rps": median(r["rps"] for r in per[s.name]),
                "cpu_us": median(r["cpu_us"] for r in per[s.name]),
                "p50": median(r["p50"] for r in per[s.name]),
                "p99": median(r["p99"] for r in per[s.name]),
                "upstream": calls[s.name],
                "requests": sum(r["requests"] for r in per[s.name]),
                "bad": sum(r["non2xx"] + r["errors"] for r in per[s.name]),
                "rss_kib": s.rss_kib(),
            }
        self.rows.append(row)

    def access_log_cost(self):
        """Hits with the default log settings (level info, access log on, 1 in 100 hits
        logged, the log written to a file) against the log-off imagegate of the other
        scenarios: the same wrk load, rounds alternating, both on the server CPU."""
        a = self.args
        quiet = self.ig
        logged = Imagegate(self.procs, a, self.scratch, self.emu, self.token,
                           tag="imagegate-default-log", log_level="info", default_log=True)
        try:
            id_prefix = f"accesslog-{self.run_id}-"
            path = IMAGE_PATH + make_id(id_prefix, 1)
            for srv in (quiet, logged):
                load_keys(a, srv.port, id_prefix, 1)
            per = {"off": [], "default": []}
            for rnd in range(1, a.rounds + 1):
                for name, srv in (("off", quiet), ("default", logged)):
                    self.check()
                    r = run_wrk(a, srv.port, 64, a.duration, path)
                    per[name].append(r["rps"])
                    log(f"access log {name:7s} round {rnd}: {r['rps']:>10.0f} req/s  "
                        f"p99 {r['p99']:.3f} ms")
                    time.sleep(0.5)
            m = logged.metrics()
            off, on = median(per["off"]), median(per["default"])
            self.extra["access_log"] = {
                "off": off, "default": on, "ratio": on / off if off else 0.0,
                "lines": m.get("imagegate_access_log_lines_total", 0),
                "sampled_out": m.get("imagegate_access_log_hits_sampled_out_total", 0),
                "dropped": m.get("imagegate_access_log_dropped_total", 0),
                "log_bytes": os.path.getsize(os.path.join(self.scratch,
                                                          "imagegate-default-log.log")),
            }
            log(f"access log: default settings {on:,.0f} req/s vs off {off:,.0f} req/s: "
                f"ratio {self.extra['access_log']['ratio']:.3f}")
        finally:
            self.procs.stop(logged.proc)

    def herd(self):
        a = self.args
        self.extra["herd"] = {}
        for srv in (self.ng, self.ig):
            self.check()
            image = make_id(f"herd-{srv.name}-{self.run_id}-", 1)
            self.emu.add_fault({"kind": "delay", "image_id": image, "delay_ms": a.herd_delay_ms})
            try:
                res, n = self.upstream_calls(lambda: run_json(
                    [a.benchclient, "herd", "--port", str(srv.port), "--target", IMAGE_PATH + image,
                     "--n", str(a.herd_n), "--timeout-ms", "20000"], timeout=60))
            finally:
                self.emu.clear_faults()
            res["upstream"] = n
            res["upstream_conns"] = self.last_upstream_conns
            res["rss_kib"] = srv.rss_kib()
            self.extra["herd"][srv.name] = res
            log(f"herd {srv.name}: {res['answered']}/{a.herd_n} answered, upstream calls {n}, "
                f"p50 {res['p50_ms']:.1f} ms, p99 {res['p99_ms']:.1f} ms, status {res['status']}, "
                f"cache {res['cache']}")

    def memory(self):
        a = self.args
        n = a.mem_entries
        log(f"memory: a fresh imagegate filled with {n} records")
        ig = Imagegate(self.procs, a, self.scratch, self.emu, self.token, tag="imagegate-memory")
        prefix = f"mem-{self.run_id}-"
        # Warm the process (pool, TLS, parser buffers) with a first batch, then measure.
        load_keys(a, ig.port, prefix, 1000, first=1, conns=16)
        time.sleep(0.3)
        before = ig.rss_kib()
        m0 = ig.metrics()
        t = time.monotonic()
        res, calls = self.upstream_calls(
            lambda: load_keys(a, ig.port, prefix, n, first=1001, conns=16))
        took = time.monotonic() - t
        time.sleep(0.3)
        after = ig.rss_kib()
        m1 = ig.metrics()
        entries = m1.get("imagegate_cache_entries", 0) - m0.get("imagegate_cache_entries", 0)
        acc = m1.get("imagegate_cache_bytes", 0) - m0.get("imagegate_cache_bytes", 0)
        self.extra["memory"] = {
            "n": n, "body_bytes": res["body_bytes"] / res["done"], "rss_before_kib": before, "rss_after_kib": after,
            "per_entry": (after - before) * 1024.0 / n, "upstream": calls,
            "entries": entries, "accounted_per_entry": acc / entries if entries else None,
            "fill_rate": n / took if took > 0 else None,
        }
        self.procs.stop(ig.proc)
        mem = self.extra["memory"]
        log(f"memory: RSS {before} -> {after} KiB for {n} records: {mem['per_entry']:.0f} B per "
            f"entry (mean body {mem['body_bytes']:.0f} B; cache accounts "
            f"{mem['accounted_per_entry'] or 0:.0f} B per entry); fill {mem['fill_rate']:.0f}/s")

    # -- report

    def report(self):
        a = self.args
        lines = []
        w = lines.append
        w("# imagegate vs nginx proxy_cache")
        w("")
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        w(f"Run {stamp}; {a.rounds} round(s) × {a.duration} s per server and scenario, A/B "
          f"alternating (nginx first){' — QUICK smoke run, not a measurement' if a.quick else ''}. "
          f"Server on CPU {a.server_cpu} (`taskset`), wrk `-t1` on CPU {a.client_cpu}, emulator "
          f"on CPU {a.emulator_cpu}. Values are medians over the rounds; ratio = imagegate / "
          f"nginx req/s. Image ids are {ID_LEN} characters; a sample body is "
          f"{getattr(self, 'body_bytes', '?')} bytes.")
        w("")
        w(f"Versions: {a.versions}.")
        w("")
        hdr = ["scenario", "nginx req/s", "imagegate req/s", "ratio", "nginx p50/p99 ms",
               "imagegate p50/p99 ms", "server CPU µs/request nginx/imagegate",
               "upstream calls nginx/imagegate", "RSS MiB nginx/imagegate"]
        table = []
        for r in self.rows:
            ng, ig = r["nginx"], r["imagegate"]
            ratio = ig["rps"] / ng["rps"] if ng["rps"] else None
            r["ratio"] = ratio
            table.append([
                r["label"], f"{ng['rps']:,.0f}", f"{ig['rps']:,.0f}",
                f"{ratio:.2f}×" if ratio else "-",
                f"{ng['p50']:.2f} / {ng['p99']:.2f}", f"{ig['p50']:.2f} / {ig['p99']:.2f}",
                f"{ng['cpu_us']:.1f} / {ig['cpu_us']:.1f}",
                f"{ng['upstream']:,} / {ig['upstream']:,}",
                f"{ng['rss_kib'] / 1024:.1f} / {ig['rss_kib'] / 1024:.1f}",
            ])
        herd = self.extra.get("herd")
        if herd:
            ng, ig = herd["nginx"], herd["imagegate"]
            table.append([
                f"herd: {a.herd_n} at once, 1 cold id, {a.herd_delay_ms} ms upstream",
                f"{ng['answered']} answered", f"{ig['answered']} answered", "-",
                f"{ng['p50_ms']:.1f} / {ng['p99_ms']:.1f}", f"{ig['p50_ms']:.1f} / {ig['p99_ms']:.1f}",
                "-", f"{ng['upstream']} / {ig['upstream']}",
                f"{ng['rss_kib'] / 1024:.1f} / {ig['rss_kib'] / 1024:.1f}",
            ])
        lines += markdown_table(hdr, table)
        w("")
        bad = [r for r in self.rows if r["nginx"]["bad"] or r["imagegate"]["bad"]]
        for r in bad:
            w(f"- {r['label']}: non-2xx or socket errors: nginx {r['nginx']['bad']}, "
              f"imagegate {r['imagegate']['bad']}.")
        if herd:
            w(f"- herd status counts: nginx {herd['nginx']['status']}, imagegate "
              f"{herd['imagegate']['status']}; Cache-Status: nginx {herd['nginx']['cache']}, "
              f"imagegate {herd['imagegate']['cache']}.")
        if bad or herd:
            w("")

        # targets
        w("## Targets")
        w("")
        targets = []
        for r in self.rows:
            ng, ig = r["nginx"], r["imagegate"]
            if r["kind"] == "hit":
                ok = (r["ratio"] or 0) >= 1.5 and ig["p99"] <= ng["p99"] and ig["upstream"] == 0
                targets.append([f"{r['label']}: ≥ 1.5× nginx req/s, p99 ≤ nginx, 0 upstream calls",
                                f"{r['ratio']:.2f}×, p99 {ig['p99']:.2f} vs {ng['p99']:.2f} ms, "
                                f"{ig['upstream']} calls", ok])
            else:
                ok = (r["ratio"] or 0) >= 1.0
                targets.append([f"{r['label']}: ≥ 1.0× nginx req/s",
                                f"{r['ratio']:.2f}× ({ig['upstream']:,} upstream calls for "
                                f"{ig['requests']:,} requests; server CPU per request "
                                f"{ig['cpu_us']:.1f} vs {ng['cpu_us']:.1f} µs)", ok])
        if herd:
            ig = herd["imagegate"]
            limit = a.herd_delay_ms + 10
            ok = ig["upstream"] == 1 and ig["answered"] == a.herd_n and ig["p50_ms"] <= limit
            targets.append([f"herd: 1 upstream call, median ≤ {limit} ms",
                            f"{ig['upstream']} call(s), median {ig['p50_ms']:.1f} ms, "
                            f"{ig['answered']}/{a.herd_n} answered", ok])
        al = self.extra.get("access_log")
        if al:
            targets.append(["hits with the default log settings ≥ 0.95 × log off",
                            f"{al['ratio']:.3f} ({al['default']:,.0f} vs {al['off']:,.0f} req/s; "
                            f"{al['lines']:,.0f} lines, {al['sampled_out']:,.0f} hits sampled "
                            f"out, {al['dropped']:,.0f} dropped, {al['log_bytes'] / 1e6:.1f} MB "
                            f"written)", al["ratio"] >= 0.95])
        mem = self.extra.get("memory")
        if mem:
            limit = round(mem["body_bytes"]) + 256
            ok = mem["per_entry"] <= limit
            targets.append([f"memory: RSS per cached record ≤ body + 256 B ({limit} B)",
                            f"{mem['per_entry']:.0f} B per entry over {mem['n']:,} records "
                            f"(cache accounts {mem['accounted_per_entry'] or 0:.0f} B)", ok])
        if "startup_ms" in self.extra:
            st = median(self.extra["startup_ms"])
            targets.append(["start-up to ready (exec → /readyz 200) ≤ 50 ms",
                            f"{st:.1f} ms (median of {len(self.extra['startup_ms'])})", st <= 50])
            idle = median(self.extra["idle_rss_kib"]) * 1024
            targets.append(["idle RSS ≤ 20 MB", f"{idle / 1e6:.1f} MB", idle <= 20e6])
        lines += markdown_table(["target", "measured", "result"],
                                [[t, m, "PASS" if ok else "FAIL"] for t, m, ok in targets])
        w("")

        # raw rounds
        w("<details><summary>Every round</summary>")
        w("")
        lines += markdown_table(
            ["scenario", "round", "server", "req/s", "p50 ms", "p99 ms", "requests",
             "upstream calls", "upstream conns opened", "server CPU",
             "CPU µs per request: server / wrk / emulator", "non-2xx + socket errors"],
            [[lbl, str(rnd), srv, f"{r['rps']:,.0f}", f"{r['p50']:.3f}", f"{r['p99']:.3f}",
              f"{r['requests']:,}", f"{r['upstream']:,}", f"{r['upstream_conns']:,}",
              f"{r['cpu'] * 100:.0f}%",
              f"{r['cpu_us']:.1f} / {r['client_cpu_us']:.1f} / {r['emu_cpu_us']:.1f}",
              str(r["non2xx"] + r["errors"])]
             for lbl, rnd, srv, r in self.rounds])
        w("")
        if mem:
            w(f"Memory: a fresh imagegate, 1,000 records loaded first, then {mem['n']:,} more; "
              f"VmRSS {mem['rss_before_kib']:,} → {mem['rss_after_kib']:,} KiB; "
              f"fill rate {mem['fill_rate'] or 0:,.0f} records/s through the TLS emulator.")
            w("")
        if "startup_ms" in self.extra:
            w("Start-up trials (ms): " + ", ".join(f"{t:.1f}" for t in self.extra["startup_ms"])
              + "; idle VmRSS (KiB): " + ", ".join(str(r) for r in self.extra["idle_rss_kib"]))
            w("")
        w("</details>")
        text = "\n".join(lines) + "\n"
        out = os.path.join(ROOT, "build", "bench", "results.md")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out, "w") as f:
            f.write(text)
        print()
        print(text)
        log("written to build/bench/results.md")

    # -- main

    def run(self):
        a = self.args
        want = set(a.only.split(",")) if a.only else None

        def on(name):
            return want is None or name in want

        self.setup()
        if on("startup"):
            self.startup_and_idle()
        self.start_servers()
        scenarios = [
            ("k1c64", "hit, 1 key, 64 conns", "hit", 64, 1),
            ("k1c256", "hit, 1 key, 256 conns", "hit", 256, 1),
            ("k1000c64", f"hit, {a.keys} keys, 64 conns", "hit", 64, a.keys),
            ("k1000c256", f"hit, {a.keys} keys, 256 conns", "hit", 256, a.keys),
            ("miss", f"all-miss, {a.miss_conns} conns", "miss", a.miss_conns, 0),
        ]
        for key, label, kind, conns, keys in scenarios:
            if on(key):
                self.scenario(key, label, kind, conns, keys)
        if on("accesslog"):
            self.access_log_cost()
        if on("herd"):
            self.herd()
        if on("memory"):
            self.memory()
        self.report()


def markdown_table(header, rows):
    cols = list(zip(*([header] + rows))) if rows else [[h] for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]

    def fmt(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(r) for r in rows]
    return out


def run_guarded(run, procs, cleanup=None):
    """Runs `run()` with SIGINT, SIGTERM and SIGHUP stopping it, then stops every process of
    `procs` (and calls `cleanup`). Returns the exit status: 0, or 3 when run() returned False;
    130 when interrupted; 1 on a failure."""
    def terminate(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # run.sh starts the benchmark in the background, where SIGINT starts out ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    rc = 0
    try:
        rc = 3 if run() is False else 0
    except KeyboardInterrupt:
        log("interrupted: stopping everything")
        rc = 130
    except (BenchError, subprocess.TimeoutExpired, OSError) as e:
        log(f"FAILED: {e}")
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        if cleanup is not None:
            cleanup()
    return rc


def main():
    p = argparse.ArgumentParser(prog="tests/bench/run.sh",
                                description="imagegate vs nginx proxy_cache benchmark")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round × 3 s")
    p.add_argument("--full", action="store_true", help="memory test with 1,000,000 records")
    p.add_argument("--rounds", type=int, help="rounds per scenario and server (default 3)")
    p.add_argument("--duration", type=int, help="seconds per wrk run (default 10)")
    p.add_argument("--keys", type=int, default=1000, help="keys of the multi-key scenarios")
    p.add_argument("--miss-conns", type=int, default=16, help="connections of the all-miss run")
    p.add_argument("--herd-n", type=int, default=1000, help="simultaneous herd requests")
    p.add_argument("--herd-delay-ms", type=int, default=200, help="upstream delay in the herd")
    p.add_argument("--mem-entries", type=int, help="records for the memory test (default 100000)")
    p.add_argument("--startup-trials", type=int, default=5)
    p.add_argument("--only", help="comma list of: startup,k1c64,k1c256,k1000c64,k1000c256,"
                                  "miss,accesslog,herd,memory")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--emulator-cpu", type=int, default=1)
    p.add_argument("--cache-max-bytes", default="4GiB", help="imagegate --cache-max-bytes")
    p.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"),
                   help="where the release binaries are (default build/release)")
    p.add_argument("--no-build", action="store_true",
                   help="run.sh: do not run the cmake build first")
    a = p.parse_args()
    if a.rounds is None:
        a.rounds = 1 if a.quick else 3
    if a.duration is None:
        a.duration = 3 if a.quick else 10
    if a.mem_entries is None:
        a.mem_entries = 1_000_000 if a.full else 100_000
    if a.rounds < 1 or a.duration < 1 or a.rounds * a.duration > 600:
        p.error("rounds and duration must be ≥ 1 and rounds × duration ≤ 600 s")
    if a.herd_n < 1 or a.herd_n > 10000 or a.mem_entries < 1 or a.mem_entries > 5_000_000:
        p.error("--herd-n must be 1..10000 and --mem-entries 1..5000000")
    if 2 * a.rounds * a.duration + 30 > TTL_SECONDS:
        log(f"warning: a scenario lasts longer than the {TTL_SECONDS} s TTL; "
            "hit scenarios will see refreshes")
    known = {"startup", "k1c64", "k1c256", "k1000c64", "k1000c256", "miss", "accesslog", "herd",
             "memory"}
    if a.only and not set(a.only.split(",")) <= known:
        p.error(f"--only takes a comma list of {','.join(sorted(known))}")
    a.imagegate_bin = os.path.join(a.build_dir, "gateway", "imagegate")
    a.emulator_bin = os.path.join(a.build_dir, "tests", "emulator", "imagegate-emulator")
    a.benchclient = os.path.join(ROOT, "build", "bench", "benchclient")
    a.wrk_bin = shutil.which("wrk") or "wrk"
    a.nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    for f in (a.imagegate_bin, a.emulator_bin, a.benchclient, a.nginx_bin):
        if not os.access(f, os.X_OK):
            p.error(f"missing executable {os.path.relpath(f, ROOT)} (run tests/bench/run.sh)")
    ngv = subprocess.run([a.nginx_bin, "-v"], capture_output=True, text=True).stderr.strip()
    wrkv = subprocess.run([a.wrk_bin, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
    a.versions = f"{ngv.replace('nginx version: ', '')}, {' '.join(wrkv.split()[:2])}"

    bench = Bench(a)
    return run_guarded(bench.run, bench.procs,
                       lambda: shutil.rmtree(bench.cache_dir, ignore_errors=True))


if __name__ == "__main__":
    sys.exit(main())
