#!/usr/bin/env python3
"""The official Cloudflare TypeScript SDK against the real imagegate binary: imagegate in
token mode with two client keys (one granted forward GET, POST, PATCH and DELETE under the
account's images/, one with no forward grant) in front of the in-repo emulator over verified
TLS; sdk_test.ts, compiled with the pinned TypeScript against the pinned SDK's declarations,
drives the SDK with baseURL pointed at imagegate and checks every step's upstream calls and
budget slots (see sdk_test.ts).

Needs node and tests/sdk/node_modules exactly as package-lock.json pins it
(deploy/install-deps.sh --with-deploy-tools installs both); without them the test fails.

    sdk_test.py SOURCE_DIR IMAGEGATE_BINARY EMULATOR_BINARY
"""
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from servers import BASE_ENV, Children, StartError, start_emulator, start_imagegate  # noqa: E402

SOURCE, BINARY, EMULATOR = (os.path.abspath(p) for p in sys.argv[1:4])
SDK_DIR = os.path.join(SOURCE, "tests/sdk")
MODULES = os.path.join(SDK_DIR, "node_modules")
ACCOUNT = "023e105f4ecef8ad9ca31a8372d0c353"
SEEDED = 12  # the emulator's images: with 2 uploads, v2 pages of 10 take two calls
INSTALL_HINT = "run: bash deploy/install-deps.sh --with-deploy-tools"


def fail(message):
    print(f"sdk_test: FAIL: {message}", file=sys.stderr)
    return 1


def installed_mismatch():
    """Why node_modules is not what package-lock.json pins, or None."""
    with open(os.path.join(SDK_DIR, "package-lock.json")) as f:
        lock = json.load(f)["packages"]
    for name in ("cloudflare", "typescript", "@types/node"):
        want = lock[f"node_modules/{name}"]["version"]
        try:
            with open(os.path.join(MODULES, name, "package.json")) as f:
                have = json.load(f)["version"]
        except OSError:
            return f"{name} is not installed in tests/sdk/node_modules"
        if have != want:
            return f"tests/sdk/node_modules has {name} {have}, package-lock.json pins {want}"
    return None


def config_text(writer, reader):
    def sha(key):
        return hashlib.sha256(key.encode()).hexdigest()
    return (f'[[auth.client_keys]]\nsha256 = "{sha(writer)}"\naccounts = ["{ACCOUNT}"]\n'
            'forward = ["GET", "POST", "PATCH", "DELETE"]\n'
            f'forward_prefixes = ["/accounts/{ACCOUNT}/images/"]\n\n'
            f'[[auth.client_keys]]\nsha256 = "{sha(reader)}"\naccounts = ["{ACCOUNT}"]\n')


def main():
    node = shutil.which("node")
    if node is None:
        return fail(f"node is not installed; {INSTALL_HINT}")
    why = installed_mismatch()
    if why:
        return fail(f"{why}; {INSTALL_HINT}")
    node_env = dict(BASE_ENV, PATH=f"{os.path.dirname(node)}:{BASE_ENV['PATH']}",
                    NODE_PATH=MODULES)
    with tempfile.TemporaryDirectory() as scratch:
        # Type-checked against the installed SDK's declarations, then run as plain JS.
        out = os.path.join(scratch, "js")
        tsc = subprocess.run([node, os.path.join(MODULES, "typescript/bin/tsc"), "--project",
                              os.path.join(SDK_DIR, "tsconfig.json"), "--outDir", out],
                             capture_output=True, text=True, env=node_env, timeout=120)
        if tsc.returncode != 0:
            return fail(f"tsc failed:\n{tsc.stdout}{tsc.stderr}")

        token = "sdk-test-upstream-token"
        writer, reader = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        config = os.path.join(scratch, "imagegate.toml")
        with open(config, "w") as f:
            f.write(config_text(writer, reader))
        with Children() as children:
            try:
                emu_port, ca = start_emulator(children, EMULATOR, scratch, token,
                                              "--images", str(SEEDED))
                data, admin = start_imagegate(children, BINARY, scratch, token, config,
                                              emu_port, ca)
            except StartError as e:
                return fail(str(e))
            run = subprocess.run(
                [node, os.path.join(out, "sdk_test.js")], capture_output=True, text=True,
                timeout=120, env=dict(
                    node_env,
                    SDK_TEST_GATEWAY=f"http://127.0.0.1:{data}/client/v4",
                    SDK_TEST_ADMIN=f"http://127.0.0.1:{admin}",
                    SDK_TEST_EMULATOR=f"https://localhost:{emu_port}",
                    SDK_TEST_CA=ca, SDK_TEST_ACCOUNT=ACCOUNT, SDK_TEST_WRITER=writer,
                    SDK_TEST_READER=reader, SDK_TEST_SEEDED=str(SEEDED)))
            sys.stdout.write(run.stdout)
            sys.stderr.write(run.stderr)
            if run.returncode != 0:
                with open(os.path.join(scratch, "imagegate.log"), errors="replace") as f:
                    sys.stderr.write("imagegate's log, last lines:\n" + f.read()[-3000:])
                return fail(f"sdk_test.js exited with status {run.returncode}")
    print("sdk_test: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
