#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (--remote-debugging-pipe: no port, no
websocket, the standard library only) through the proxy's status page, for proxy/tests/console.rs.

    console_browser.py URL HOST SCREENSHOT.png

Loads URL at 1024 px, waits for HOST's card, saves a screenshot, reloads it at 390 px (a phone)
and measures its width, clicks HOST's Forget button and waits for the card to go, then starts a
request to an outside address on purpose, to show the request log would catch one. Prints one
JSON object: the card's text, the widths, every request the page made, console messages
(CSP violations land there), whether the card went, and what the probe left in the log.
Exit 2 with a message if Chromium cannot be started.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.stderr.write("no chromium on PATH: apt-get install chromium (.ci/run installs it)\n")
    sys.exit(2)


def high(fd):
    """The descriptor moved to 10 or above."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="console-browser-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Chromium reads commands on fd 3 and writes on fd 4: the child's ends are moved above
        # them first, so that setting one cannot close the other.
        to_chrome_r, from_chrome_w = (high(to_chrome_r), high(from_chrome_w))

        def fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                chromium(),
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--user-data-dir=" + self.profile,
                "about:blank",
            ],
            preexec_fn=fds,
            # Python's own descriptors are close-on-exec (PEP 446); the two dup2 made are not.
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        want = self.next_id
        deadline = time.time() + 20
        while time.time() < deadline:
            m = self.read()
            if m.get("id") == want:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)
        raise RuntimeError(f"{method}: no answer in 20 s")

    def read(self, secs=20):
        deadline = time.time() + secs
        while b"\0" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.from_chrome], [], [], left)[0]:
                raise RuntimeError(f"chromium said nothing for {secs} s")
            chunk = os.read(self.from_chrome, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def open(self, width, height):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        self.session = attached["sessionId"]
        for domain in ("Network", "Page", "Runtime", "Log"):
            self.send(domain + ".enable")
        self.resize(width, height)

    def resize(self, width, height):
        # Headless scrollbars take width from the picture, not from the layout.
        self.send("Emulation.setScrollbarsHidden", {"hidden": True})
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    def eval(self, expr):
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expr, secs=15):
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.eval(expr):
                return True
            time.sleep(0.1)
        return False

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def main():
    url, host, shot = sys.argv[1], sys.argv[2], sys.argv[3]
    b = Browser()
    try:
        out = run(b, url, host, shot)
    finally:
        b.close()
    print(json.dumps(out))


def run(b, url, host, shot):
    card = "document.querySelector('section.host[data-host=' + JSON.stringify(%s) + ']')" % json.dumps(host)
    b.open(1000, 768)
    b.send("Page.navigate", {"url": url})
    out = {"found": b.wait_for(card + " !== null")}
    out["card_text"] = b.eval(f"({card} || {{}}).innerText || ''")
    out["card_legacy"] = b.eval(f"!!({card} && {card}.classList.contains('legacy'))")
    out["page_text"] = b.eval("document.body.innerText")
    # Let the counters fill in before the picture.
    b.wait_for("document.querySelectorAll('#counters table').length >= 4")
    png = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png["data"]))

    # A phone: 390 px wide, the page loaded at that width.
    b.resize(390, 844)
    b.send("Page.reload")
    b.wait_for(card + " !== null")
    b.wait_for("document.querySelectorAll('#counters table').length >= 4")
    png = b.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    with open(shot[: -len(".png")] + "-390.png", "wb") as f:
        f.write(base64.b64decode(png["data"]))
    out["width_390"] = {
        "scroll": b.eval("document.documentElement.scrollWidth"),
        "body_scroll": b.eval("document.body.scrollWidth"),
        "inner": b.eval("window.innerWidth"),
    }

    # Forget, by clicking the button.
    b.eval(f"{card}.querySelector('button.forget').click()")
    out["gone"] = b.wait_for(card + " === null", secs=10)
    out["after_forget_text"] = b.eval("document.body.innerText")

    requests_before_probe = [e["params"]["request"]["url"] for e in b.events if e["method"] == "Network.requestWillBeSent"]
    console_before_probe = console(b.events)
    # The probe: an outside request, which the page's policy blocks; the log must show it.
    b.eval("fetch('http://192.0.2.1/probe.png').catch(() => null).then(() => true)")
    time.sleep(0.5)
    b.eval("1")  # drains events
    probe_requests = [
        e["params"]["request"]["url"] for e in b.events if e["method"] == "Network.requestWillBeSent"
    ]
    out["requests"] = requests_before_probe
    out["console"] = console_before_probe
    out["probe_seen"] = any("192.0.2.1" in u for u in probe_requests) or any(
        "192.0.2.1" in m for m in console(b.events)
    )
    return out


def console(events):
    msgs = []
    for e in events:
        if e["method"] == "Log.entryAdded":
            msgs.append(e["params"]["entry"].get("text", ""))
        elif e["method"] == "Runtime.consoleAPICalled":
            msgs.append(" ".join(str(a.get("value", "")) for a in e["params"].get("args", [])))
        elif e["method"] == "Runtime.exceptionThrown":
            msgs.append(json.dumps(e["params"].get("exceptionDetails", {}))[:300])
    return msgs


if __name__ == "__main__":
    main()
