#!/usr/bin/env python3
"""deploy/container/Containerfile, as far as this machine can check it without a container
engine: the file's stages and instructions, that the build stage copies every source folder
the build reads (a copy of exactly those folders configures), that the runtime stage installs
exactly the packages of the libraries `ldd` resolves for the built binary, that the entry
command and user are the ones deploy/README.md documents, that the baked config refuses to
start anonymously on 0.0.0.0 and passes with IMAGEGATE_AUTH_ALLOW_ANONYMOUS=true, and that the
HEALTHCHECK script tells a live admin listener from a dead one.

    container_test.py SOURCE_DIR BINARY
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SOURCE = os.path.abspath(sys.argv[1])
BINARY = os.path.abspath(sys.argv[2])
CONTAINERFILE = os.path.join(SOURCE, "deploy/container/Containerfile")
CONFIG = os.path.join(SOURCE, "deploy/container/imagegate.toml")
HEALTHCHECK = os.path.join(SOURCE, "deploy/container/healthcheck.sh")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print(f"container_test: FAIL: {message}", file=sys.stderr)
    return condition


def instructions(path):
    """[(stage index, KEYWORD, arguments)] with continuation lines joined, comments dropped."""
    out, stage, pending = [], -1, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = pending + line
            pending = ""
            keyword, _, args = line.strip().partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            out.append((stage, keyword, " ".join(args.split())))
    assert not pending, "the file ends inside a continued line"
    return out


def exec_form(args):
    """A JSON-array (exec form) argument list, or None."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def package_of(path):
    """The Debian package owning a shared library, trying the path as ldd prints it, with /usr
    (merged /usr: dpkg knows one of the two), and resolved."""
    candidates = [path, "/usr" + path if not path.startswith("/usr/") else path[4:],
                  os.path.realpath(path)]
    for candidate in candidates:
        r = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def linked_packages(binary):
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    packages = {}
    for line in ldd.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if not m:
            check("linux-vdso" in line, f"ldd line without a path: {line.strip()}")
            continue
        package = package_of(m.group(1))
        check(package is not None, f"no Debian package owns {m.group(1)}")
        if package:
            packages[package] = m.group(1)
    return packages


def top_level_sources():
    """Top-level folders and files the top-level CMakeLists.txt reads, besides tests/."""
    with open(os.path.join(SOURCE, "CMakeLists.txt"), encoding="utf-8") as f:
        text = f.read()
    needed = {"CMakeLists.txt", "CMakePresets.json"}
    for m in re.finditer(r"^\s*(?:add_subdirectory|include)\(([^)\s]+)", text, re.M):
        path = m.group(1).replace("${PROJECT_SOURCE_DIR}/", "")
        if "/" in path or os.path.isdir(os.path.join(SOURCE, path)):
            top = path.split("/")[0]
            if top != "tests":
                needed.add(top)
    return needed


def main():
    steps = instructions(CONTAINERFILE)
    froms = [args for _, kw, args in steps if kw == "FROM"]
    check(len(froms) == 2, f"expected 2 stages, found {len(froms)}")
    check(froms and froms[0] == "debian:12-slim AS build", f"build stage: FROM {froms[:1]}")
    check(len(froms) > 1 and froms[1] == "debian:12-slim", f"runtime stage: FROM {froms[1:]}")
    known = {"FROM", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "HEALTHCHECK", "ENTRYPOINT",
             "CMD"}
    for _, kw, args in steps:
        check(kw in known, f"unexpected instruction {kw} {args}")
    build = [(kw, args) for stage, kw, args in steps if stage == 0]
    runtime = [(kw, args) for stage, kw, args in steps if stage == 1]

    # --- build stage: the project's own install script, the release preset ---
    build_runs = " && ".join(args for kw, args in build if kw == "RUN")
    for command in ("bash deploy/install-deps.sh", "cmake --preset release -DBUILD_TESTING=OFF",
                    "cmake --build --preset release --target imagegate"):
        check(command in build_runs, f"the build stage does not run `{command}`")
    workdir = next((args for kw, args in build if kw == "WORKDIR"), "")
    copied = set()
    for kw, args in build:
        if kw == "COPY":
            parts = args.split()
            copied.update(p.rstrip("/") for p in parts[:-1])
    missing = top_level_sources() - copied
    check(not missing, f"the build stage does not COPY {sorted(missing)}")
    for path in copied:
        check(os.path.exists(os.path.join(SOURCE, path)), f"COPY of a missing path {path}")

    # A tree of exactly the copied paths configures with the build stage's command.
    with tempfile.TemporaryDirectory() as tree:
        for path in copied:
            src, dst = os.path.join(SOURCE, path), os.path.join(tree, path)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, dst)
        r = subprocess.run(["cmake", "--preset", "release", "-DBUILD_TESTING=OFF"], cwd=tree,
                           capture_output=True, text=True,
                           env={**os.environ, "CCACHE_DISABLE": "1"})
        check(r.returncode == 0, f"the copied sources do not configure:\n{r.stdout}{r.stderr}")
        ninja = os.path.join(tree, "build/release/build.ninja")
        if r.returncode == 0:
            with open(ninja, encoding="utf-8") as f:
                rules = f.read()
            check("build gateway/imagegate:" in rules, "no gateway/imagegate target configured")
            check("emulator" not in rules, "the emulator is configured in the image build")

    # --- runtime stage: exactly the linked libraries' packages, plus the CA store ---
    runtime_runs = " ".join(args for kw, args in runtime if kw == "RUN")
    m = re.search(r"apt-get install -y --no-install-recommends ([a-z0-9.+\- ]+?) &&",
                  runtime_runs)
    check(m is not None, "the runtime stage has no apt-get install --no-install-recommends")
    listed = set(m.group(1).split()) if m else set()
    linked = linked_packages(BINARY)
    expected = set(linked) | {"ca-certificates"}
    check(listed == expected,
          f"runtime packages {sorted(listed)} != linked {sorted(linked)} + ca-certificates")
    print(f"container_test: ldd {os.path.basename(BINARY)} -> {', '.join(sorted(linked))}")

    # --- user, ports, health check, entry command, as deploy/README.md says ---
    user = next((args for kw, args in runtime if kw == "USER"), None)
    check(user == "10001:10001", f"USER is {user}")
    check(re.search(r"groupadd --system --gid 10001 imagegate", runtime_runs) is not None,
          "no groupadd --gid 10001")
    check(re.search(r"useradd --system --uid 10001 --gid 10001 ", runtime_runs) is not None,
          "no useradd --uid 10001")
    exposed = {p for kw, args in runtime if kw == "EXPOSE" for p in args.split()}
    check(exposed == {"8080", "9090"}, f"EXPOSE {sorted(exposed)}")
    copies = {args.split()[-1]: args.split()[-2] for kw, args in runtime if kw == "COPY"}
    check(copies.get("/usr/bin/imagegate") == f"{workdir}/build/release/gateway/imagegate",
          "the binary is not copied from the release preset's build tree")
    check(copies.get("/etc/imagegate/imagegate.toml") == "deploy/container/imagegate.toml",
          "the baked config is not deploy/container/imagegate.toml")
    health = next((args for kw, args in runtime if kw == "HEALTHCHECK"), "")
    health_cmd = exec_form(health.partition(" CMD ")[2])
    check(health_cmd is not None and copies.get(health_cmd[0]) == "deploy/container/healthcheck.sh",
          f"HEALTHCHECK does not run the copied healthcheck.sh: {health}")
    entry = exec_form(next((a for k, a in runtime if k == "ENTRYPOINT"), ""))
    cmd = exec_form(next((a for k, a in runtime if k == "CMD"), ""))
    check(entry is not None and cmd is not None, "ENTRYPOINT and CMD are not in exec form")
    command = " ".join((entry or []) + (cmd or []))
    with open(os.path.join(SOURCE, "deploy/README.md"), encoding="utf-8") as f:
        readme = f.read()
    m = re.search(r"The image runs\s+`([^`]+)`\s+as\s+user\s+`([^`]+)`", readme)
    check(m is not None, "deploy/README.md does not say what the image runs")
    if m:
        check(m.group(1) == command, f"README says `{m.group(1)}`, the image runs `{command}`")
        check(m.group(2) == user, f"README says user {m.group(2)}, the image has {user}")

    # --- the baked config: listeners on the exposed ports, anonymous only when asked ---
    with open(CONFIG, encoding="utf-8") as f:
        config = f.read()
    ports = set(re.findall(r'^(?:listen|admin_listen) = "0\.0\.0\.0:(\d+)"', config, re.M))
    check(ports == exposed, f"the config listens on {sorted(ports)}, EXPOSE says {sorted(exposed)}")
    admin = re.search(r'^admin_listen = "0\.0\.0\.0:(\d+)"', config, re.M)
    check(admin and health_cmd and health_cmd[-1] == f"127.0.0.1:{admin.group(1)}",
          "the HEALTHCHECK does not probe the admin port")
    base = [BINARY, "--config", CONFIG, "--check-config"]
    r = subprocess.run(base, env=CLEAN_ENV, capture_output=True, text=True)
    check(r.returncode == 2 and "auth.allow_anonymous" in r.stderr,
          f"the baked config should refuse anonymous 0.0.0.0: exit {r.returncode} {r.stderr}")
    r = subprocess.run(base, env={**CLEAN_ENV, "IMAGEGATE_AUTH_ALLOW_ANONYMOUS": "true"},
                       capture_output=True, text=True)
    check(r.returncode == 0, f"with IMAGEGATE_AUTH_ALLOW_ANONYMOUS=true: exit {r.returncode} "
                             f"{r.stderr}")

    # --- the health check against a live instance (loopback, ports chosen by the kernel) ---
    server = subprocess.Popen(
        [BINARY, "--config", CONFIG, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
         "--threads", "1"],
        env={**CLEAN_ENV, "IMAGEGATE_LOG_ACCESS_LOG": "false"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        data_port = admin_port = None
        # A reader thread: select() on the pipe cannot see lines already buffered by the
        # text wrapper (one write may carry the whole start-up log).
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in server.stdout] and None,
                         daemon=True).start()
        deadline = time.monotonic() + 10
        while admin_port is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            m = re.search(r"listening on http://[^ ]+:(\d+) .*admin on http://[^ ]+:(\d+)", line)
            if m:
                data_port, admin_port = m.group(1), m.group(2)
        if check(admin_port is not None, "imagegate did not report its ports within 10 s"):
            def probe(port):
                return subprocess.run(["bash", HEALTHCHECK, f"127.0.0.1:{port}"], env=CLEAN_ENV,
                                      timeout=10).returncode
            check(probe(admin_port) == 0, "the health check failed against a live admin port")
            check(probe(data_port) != 0, "the health check passed on the data port (404)")
    finally:
        server.send_signal(signal.SIGTERM)
        rc = server.wait(timeout=30)
    check(rc == 0, f"imagegate exited {rc} on SIGTERM")
    if admin_port is not None:
        r = subprocess.run(["bash", HEALTHCHECK, f"127.0.0.1:{admin_port}"], env=CLEAN_ENV,
                           capture_output=True, timeout=10)
        check(r.returncode != 0, "the health check passed after imagegate stopped")

    if failures:
        print(f"container_test: {len(failures)} failure(s)", file=sys.stderr)
        return 1
    print("container_test: Containerfile, runtime packages, entry command, config and health "
          "check OK (no container engine here: the image itself is not built)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
