#!/usr/bin/env python3
"""Opens a probe report (an HTML file) in headless Chromium, for tests/probe_report.rs.

    probe_report_browser.py REPORT.html SCREENSHOT.png

Drives Chromium over the DevTools protocol with the Browser class of
proxy/tests/console_browser.py (--remote-debugging-pipe, the standard library only). Loads the
file at 1200 px, saves the top 1200x2400 of it, reloads it at 390 px (a phone) and saves
SCREENSHOT-390.png, then starts a request to an outside address on purpose, to show that the
request log would catch one. Prints one JSON object: the page's innerText, every request the
page made, every src/href-like attribute in the DOM, the CSP meta tag, the number of SVG
drawings, the widths at 390 px, console messages (CSP violations land there) and whether the
outside request was seen. Exit 2 with a message if Chromium cannot be started.
"""

import base64
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "proxy", "tests"))

from console_browser import Browser, console  # noqa: E402

ATTRS = """(() => {
  const out = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      const n = a.name.toLowerCase();
      if (['src', 'href', 'xlink:href', 'srcset', 'action', 'formaction', 'poster',
           'background', 'data', 'ping', 'manifest'].includes(n)) {
        out.push(el.tagName + ' ' + n + '=' + a.value);
      }
    }
  }
  return out;
})()"""


def shot(b, path, width, height):
    png = b.send(
        "Page.captureScreenshot",
        {"format": "png", "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}},
    )
    with open(path, "wb") as f:
        f.write(base64.b64decode(png["data"]))


def load(b, url):
    b.send("Page.navigate", {"url": url})
    return b.wait_for("document.readyState === 'complete' && !!document.querySelector('main')")


def run(b, url, png):
    b.open(1200, 2400)
    out = {"loaded": load(b, url)}
    out["text"] = b.eval("document.body.innerText")
    out["attributes"] = b.eval(ATTRS)
    out["csp"] = b.eval(
        "[...document.querySelectorAll('meta[http-equiv]')]"
        ".map(m => m.getAttribute('http-equiv') + ': ' + m.content)"
    )
    out["svg"] = b.eval("document.querySelectorAll('svg').length")
    out["scripts"] = b.eval("document.scripts.length")
    shot(b, png, 1200, 2400)

    b.resize(390, 1800)
    b.send("Page.reload")
    load(b, url)
    out["width_390"] = {
        "scroll": b.eval("document.documentElement.scrollWidth"),
        "body_scroll": b.eval("document.body.scrollWidth"),
        "inner": b.eval("window.innerWidth"),
    }
    shot(b, png[: -len(".png")] + "-390.png", 390, 1800)

    b.eval("1")  # drains events
    out["requests"] = requests(b.events)
    out["console"] = console(b.events)
    # The probe: an outside request, which the page's policy blocks; the log must show it.
    b.eval("fetch('http://192.0.2.1/probe.png').catch(() => null).then(() => true)")
    time.sleep(0.5)
    b.eval("1")
    out["probe_seen"] = any("192.0.2.1" in u for u in requests(b.events)) or any(
        "192.0.2.1" in m for m in console(b.events)
    )
    return out


def requests(events):
    return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]


def main():
    report, png = sys.argv[1], sys.argv[2]
    url = "file://" + os.path.abspath(report)
    b = Browser()
    try:
        out = run(b, url, png)
    finally:
        b.close()
    out["url"] = url
    print(json.dumps(out))


if __name__ == "__main__":
    main()
