#!/usr/bin/env python3
"""Drives the controller's dashboard in a real headless Chromium (DevTools protocol).

Starts a real controller and three real agents (the debug build's binaries) on loopback,
deploys a model and a staged rollout that stays in its first stage, signs in through a
one-time link, and checks that the pages show the real fleet state (device counts, the
rollout's per-stage progress) and that an action works: the "pause" button pauses the
rollout, as the API then confirms. A failed check saves a screenshot whose path is
printed. Prints "N passed, M failed" and exits non-zero on failure.

    python3 Tests/Browser/dashboard_test.py [--bin .build/debug]
"""
import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
results = {"passed": 0, "failed": 0}


class Fleet:
    def __init__(self, binaries):
        self.bin = binaries
        self.dir = tempfile.mkdtemp(prefix="bitfleet-browser-")
        self.processes = []
        ctl = self.start("controller", ["fleet-controller", "serve", "--data-dir", f"{self.dir}/ctl", "--listen", "127.0.0.1:0",
                                        "--heartbeat-interval", "1"])
        self.url = self.wait_for(ctl, r"listening on (http://[0-9.:]+)")
        self.token = self.wait_for(ctl, r"admin token[^:]*: (adm_[A-Za-z0-9_-]+)")

    def start(self, name, command):
        log = open(f"{self.dir}/{name}.log", "w")
        process = subprocess.Popen([os.path.join(self.bin, command[0])] + command[1:], stdout=log, stderr=subprocess.STDOUT)
        process.log_path = log.name
        self.processes.append(process)
        return process

    def wait_for(self, process, pattern, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            match = re.search(pattern, open(process.log_path).read())
            if match:
                return match.group(1)
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[0]} exited: {open(process.log_path).read()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {pattern} in {process.log_path}")

    def api(self, method, path, body=None):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def fleetctl(self, *args):
        env = dict(os.environ, FLEET_CONTROLLER=self.url, FLEET_TOKEN=self.token)
        return subprocess.run([os.path.join(self.bin, "fleetctl"), *args], env=env, check=True, capture_output=True, text=True).stdout

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Browser:
    """Headless Chromium driven over its DevTools websocket."""

    def __init__(self, profile):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
        if not chromium:
            raise RuntimeError("no chromium on PATH (apt-get install chromium)")
        self.process = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-port=0",
                                         f"--user-data-dir={profile}", "--window-size=1200,900", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = None
        deadline = time.time() + 30
        while time.time() < deadline and port is None:
            line = self.process.stderr.readline()
            match = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        if port is None:
            raise RuntimeError("chromium did not start its DevTools endpoint")
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.call("Page.enable")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def open(self, url, path_prefix):
        self.call("Page.navigate", url=url)
        self.wait(f"document.readyState === 'complete' && location.pathname.startsWith({json.dumps(path_prefix)})")

    def wait(self, condition, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.evaluate(f"Boolean({condition})"):
                return True
            time.sleep(0.2)
        return False

    def screenshot(self, name):
        os.makedirs(os.path.join(ROOT, ".build-browser"), exist_ok=True)
        path = os.path.join(ROOT, ".build-browser", f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.call("Page.captureScreenshot")["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        finally:
            self.process.kill()
            self.process.wait()


def check(browser, name, condition, detail=""):
    if condition:
        results["passed"] += 1
        print(f"ok: {name}")
    else:
        results["failed"] += 1
        shot = browser.screenshot(re.sub(r"[^a-z0-9]+", "-", name.lower()))
        print(f"FAILED: {name} {detail} (screenshot: {shot})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, ".build", "debug"))
    args = parser.parse_args()
    fleet = Fleet(args.bin)
    profile = tempfile.mkdtemp(prefix="bitfleet-chromium-")
    browser = None
    try:
        for name in ("b1", "b2", "b3"):
            # Labels come from the token (what a device asks for itself is never targeted).
            token = fleet.fleetctl("enroll-token", "create", "--label", f"site={name}").strip()
            fleet.start(name, ["fleet-agent", "run", "--data-dir", f"{fleet.dir}/{name}", "--controller", fleet.url, "--listen", "127.0.0.1:0",
                               "--name", name, "--heartbeat-interval", "1", "--enroll-token", token])
        deadline = time.time() + 30
        while time.time() < deadline and len([d for d in fleet.api("GET", "/api/v1/devices") if d["status"] == "online"]) < 3:
            time.sleep(0.2)
        models = os.path.join(ROOT, "Models", "fashion-mnist")
        fleet.fleetctl("model", "push", os.path.join(models, "bnn-cnn.bnn"), "--name", "fashion")
        fleet.fleetctl("model", "push", os.path.join(models, "bnn-mlp.bnn"), "--name", "fashion")
        fleet.fleetctl("deploy", "model", "v1", "--wait", "--timeout", "60s")
        rollout = json.loads(fleet.fleetctl("deploy", "model", "v2", "--stages", "50%,100%", "--soak", "1h", "--min-devices", "1", "--json"))
        rid = rollout["id"]
        first_stage = rollout["stages"][0]["devices"]
        deadline = time.time() + 60
        while time.time() < deadline and fleet.api("GET", f"/api/v1/rollouts/{rid}")["stages"][0]["counts"].get("active", 0) < first_stage:
            time.sleep(0.3)

        browser = Browser(profile)
        link = fleet.api("POST", "/api/v1/login-links")["path"]
        browser.open(fleet.url + link + "?next=/", "/")
        check(browser, "overview shows three devices online", browser.wait("document.getElementById('devices-online')?.textContent === '3'"),
              repr(browser.evaluate("document.getElementById('devices-online')?.textContent")))
        check(browser, "overview shows the running rollout", browser.wait(f"document.getElementById('rollout-{rid}-state')?.textContent === 'running'"))
        check(browser, "the session cookie is HttpOnly (invisible to scripts)", browser.evaluate("document.cookie") == "")

        browser.open(fleet.url + f"/rollouts/{rid}", f"/rollouts/{rid}")
        text = browser.evaluate("document.body.innerText")
        check(browser, "the rollout page shows per-stage progress", f"{first_stage}/{first_stage} active" in text and "stage 2" in text, text[:400])
        browser.evaluate("document.getElementById('action-pause').click()")
        check(browser, "the pause button pauses the rollout in the page",
              browser.wait(f"document.getElementById('rollout-{rid}-state')?.textContent === 'paused'"))
        check(browser, "the API confirms the rollout is paused", fleet.api("GET", f"/api/v1/rollouts/{rid}")["state"] == "paused")

        browser.open(fleet.url + "/devices?label=site%3Db2", "/devices")
        check(browser, "the device filter by label finds one device",
              browser.wait("document.getElementById('device-count')?.textContent === '1 devices'"))
        browser.open(fleet.url + "/audit", "/audit")
        check(browser, "the audit page lists the deployment and the dashboard's pause",
              browser.wait("document.body.innerText.includes('POST /api/v1/rollouts') && document.body.innerText.includes('/pause')"))
        check(browser, "the dashboard sign-in is audited", "GET /login/link" in browser.evaluate("document.body.innerText"))
        for path in ("/models", "/charts", "/devices/" + fleet.api("GET", "/api/v1/devices")[0]["id"]):
            browser.open(fleet.url + path, path.split("?")[0])
            check(browser, f"{path} renders", "BitFleet" in browser.evaluate("document.title"))

        # Without a session the pages redirect to the sign-in form; a forged POST without
        # the CSRF token is refused.
        request = urllib.request.Request(fleet.url + f"/rollouts/{rid}/resume", data=b"", method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code
        check(browser, "an action without a session does not run", fleet.api("GET", f"/api/v1/rollouts/{rid}")["state"] == "paused", str(status))
    finally:
        if browser:
            browser.close()
        fleet.stop()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
