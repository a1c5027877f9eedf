"""The real imagegate and imagegate-emulator binaries for tests that are Python scripts
(tests/deploy/monitoring_test.py, tests/sdk/sdk_test.py): each started on loopback ports
chosen at run time, the emulator over TLS with the test CA it writes, its output in a file of
the test's scratch directory, and stopped by its PID.

    with Children() as children:
        emu_port, ca = start_emulator(children, EMULATOR, scratch, token, "--images", "5")
        data, admin = start_imagegate(children, BINARY, scratch, token, config, emu_port, ca)
"""
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

# The only environment the servers see: nothing of the caller's (no CLOUDFLARE_* or
# IMAGEGATE_* variable changes what a test means).
BASE_ENV = {"PATH": "/usr/bin:/bin"}


class StartError(Exception):
    """A server did not start; the message has the end of its output."""


def wait_for(pred, limit=10.0):
    """pred()'s first true value within `limit` seconds, else its last value."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    return pred()


def http(method, port, path, token=None):
    """(status, body text) of one plain-HTTP request to 127.0.0.1:port."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def tail(path, limit=2000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def stop_all(procs):
    """Stops the Popen objects of `procs`, newest first: one with a stdin pipe (a helper that
    stops what it runs by its PID when its stdin closes) by closing it, every other one by
    SIGTERM to its PID; each gets 10 s, then SIGKILL."""
    for p in reversed(procs):
        if p.stdin is not None:
            p.stdin.close()
        elif p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class Children:
    """The processes a test started; leaving the `with` block stops them (stop_all)."""

    def __init__(self):
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        stop_all(self.procs)
        self.procs.clear()
        return False

    def start(self, argv, env=None, log=None, pipe=False):
        """Starts argv with `env` (default BASE_ENV). Its output goes to the file `log`, or,
        with pipe=True, to a text pipe (p.stdout) and its stdin is a pipe too."""
        if pipe:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=env or BASE_ENV, text=True)
        else:
            with open(log, "wb") as out:
                p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, env=env or BASE_ENV)
        self.procs.append(p)
        return p


def start_emulator(children, binary, scratch, token, *flags):
    """imagegate-emulator on a free loopback port over TLS, accepting `token`, with `flags`
    added (e.g. "--any-image"). Returns (port, path of its CA certificate)."""
    port_file = os.path.join(scratch, "emulator.port")
    ca = os.path.join(scratch, "emulator-ca.pem")
    log = os.path.join(scratch, "emulator.log")
    p = children.start([binary, "--listen", "127.0.0.1:0", "--port-file", port_file,
                        "--write-ca", ca, *flags], env=dict(BASE_ENV, EMULATOR_TOKEN=token),
                       log=log)

    def port():
        if not os.path.exists(port_file) or not os.path.exists(ca):
            return None
        with open(port_file) as f:
            text = f.read().strip()
        return int(text) if text.isdigit() else None
    wait_for(lambda: p.poll() is not None or port())
    if p.poll() is not None or not port():
        raise StartError("the emulator did not start: " + tail(log))
    return port(), ca


def start_imagegate(children, binary, scratch, token, config, emulator_port, ca, *flags):
    """imagegate with the configuration file `config` (or None), its data and admin listeners
    on free loopback ports, in front of the emulator over verified TLS, with the upstream
    token in its environment and `flags` added. Returns (data port, admin port)."""
    log = os.path.join(scratch, "imagegate.log")
    argv = [binary]
    if config:
        argv += ["--config", config]
    argv += ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--upstream", f"https://localhost:{emulator_port}/client/v4", "--upstream-ca", ca,
             "--threads", "1", *flags]
    p = children.start(argv, env=dict(BASE_ENV, CLOUDFLARE_API_TOKEN=token), log=log)

    def ports():
        m = re.search(r"imagegate listening on \S+ \(port (\d+)\), admin on \S+ \(port (\d+)\)",
                      tail(log, 1 << 20))
        return m and (int(m.group(1)), int(m.group(2)))
    wait_for(lambda: p.poll() is not None or ports())
    if p.poll() is not None or not ports():
        raise StartError("imagegate did not start: " + tail(log))
    return ports()
