#!/usr/bin/env python3
"""Open the page `dvc plots show` writes in headless Chromium with networking disabled, check that every chart
is drawn, and write a screenshot of the whole page.

    python .ci/check_page.py dvc_plots/index.html plots/page.png

Fails (exit 1) and says why if a chart draws nothing (a div that the page passes to vegaEmbed holds no svg or
canvas, or one of zero width or height), an image does not load, the console shows an error or an uncaught
exception, or the page requests anything but local files (file:, data:, blob:). Console warnings are printed
without failing. Exit 2: Chromium is missing or did not answer.

Talks to Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe), so it needs only the
standard library and Chromium (Debian: apt-get install chromium; another binary through $CHROMIUM).
"""

import argparse
import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
WIDTH, HEIGHT = 1280, 800

# Evaluated in the page: every chart (an element id passed to vegaEmbed by a script in the body, or an element
# vega-embed marked) with what it drew, and every image.
STATE_JS = r"""(() => {
  const ids = [];
  for (const script of document.body.querySelectorAll('script')) {
    for (const m of script.textContent.matchAll(/vegaEmbed\(\s*['"]#([^'"]+)['"]/g)) ids.push(m[1]);
  }
  for (const el of document.querySelectorAll('.vega-embed')) if (el.id && !ids.includes(el.id)) ids.push(el.id);
  const charts = ids.map(id => {
    const el = document.getElementById(id);
    const graphic = el && el.querySelector('svg.marks, canvas.marks, svg, canvas');
    const box = graphic ? graphic.getBoundingClientRect() : null;
    return {id, found: !!el, graphic: graphic ? graphic.tagName.toLowerCase() : null,
            width: box ? Math.round(box.width) : 0, height: box ? Math.round(box.height) : 0};
  });
  const images = [...document.images].map(img => ({src: img.getAttribute('src').slice(0, 200),
                                                   complete: img.complete, width: img.naturalWidth}));
  return {ready: document.readyState, charts, images};
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on fds 3 (commands) and 4 (replies, events)."""

    def __init__(self, binary: str, timeout: float):
        self.timeout = timeout
        self.profile = tempfile.TemporaryDirectory(prefix="check_page-")
        # Chromium reads commands from fd 3 and writes to fd 4. The child's pipe ends get copies above 9, so that
        # putting them on 3 and 4 cannot overwrite one with the other; fds 3 and 4 are open here (four new fds
        # take the lowest free numbers), as pass_fds needs.
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        child_ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (commands_read, replies_write)]
        flags = [
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # as root (CI) Chromium refuses to start sandboxed; the page is our own file
            f"--user-data-dir={self.profile.name}",
            f"--window-size={WIDTH},{HEIGHT}",
            "--hide-scrollbars",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-dev-shm-usage",
            "--mute-audio",
            # networking disabled: no host name resolves, and every page is emulated offline (below)
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "about:blank",
        ]
        self.process = subprocess.Popen(
            [binary, *flags],
            preexec_fn=lambda: (os.dup2(child_ends[0], 3), os.dup2(child_ends[1], 4)),  # noqa: PLW1509 (no thread yet)
            pass_fds=(3, 4),  # kept open in the child after the dup2 above
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for fd in (*child_ends, commands_read, replies_write):
            os.close(fd)
        self._messages: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.process.stderr.read, daemon=True).start()  # keep its stderr drained

    def _read(self):
        buffer = b""
        while chunk := os.read(self._replies, 1 << 16):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._messages.put(json.loads(message))
        self._messages.put(None)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._wait(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)

    def pump(self, seconds: float):
        """Collect the events that arrive within `seconds`."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if message is None:
                raise BrowserGone("Chromium exited")
            self.events.append(message)

    def _wait(self, deadline: float, method: str) -> dict:
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserGone(f"Chromium did not answer {method} within {self.timeout:.0f} s") from None
        if message is None:
            raise BrowserGone(f"Chromium exited (code {self.process.poll()}) while waiting for {method}")
        return message

    def close(self):
        try:
            if self.process.poll() is None:
                os.write(self._commands, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
                self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._commands)
            self.profile.cleanup()


class BrowserGone(Exception):
    pass


def find_chromium() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    return None


def describe(args: list[dict]) -> str:
    return " ".join(str(a.get("value", a.get("description", a.get("type")))) for a in args)


def problems_in(events: list[dict]) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, requests) from the DevTools events of the page."""
    errors, warnings, requests = [], [], []
    urls = {}
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = f"console.{params['type']}: {describe(params.get('args', []))}"
            if params["type"] in ("error", "assert"):
                errors.append(text)
            elif params["type"] == "warning":
                warnings.append(text)
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            exception = details.get("exception", {})
            text = exception.get("description") or details.get("text") or ""
            errors.append(f"uncaught exception: {text.splitlines()[0] if text else '?'}")
        elif method == "Log.entryAdded":
            entry = params["entry"]
            text = f"{entry['source']} {entry['level']}: {entry['text']} {entry.get('url', '')}".rstrip()
            if entry["level"] == "error":
                errors.append(text)
            elif entry["level"] == "warning":
                warnings.append(text)
        elif method == "Network.requestWillBeSent":
            url = urls[params["requestId"]] = params["request"]["url"]
            requests.append(url)
            if not url.startswith(LOCAL_SCHEMES):
                errors.append(f"network request attempted: {url[:200]}")
        elif method == "Network.loadingFailed":
            url = urls.get(params["requestId"], params.get("type", ""))
            errors.append(f"request failed ({params.get('errorText')}): {url[:200]}")
    return errors, warnings, requests


def page_state(browser: Browser, session: str) -> dict:
    reply = browser.send("Runtime.evaluate", {"expression": STATE_JS, "returnByValue": True}, session)
    if "exceptionDetails" in reply:  # e.g. no body yet while the page loads
        return {"ready": "loading", "charts": [], "images": []}
    return reply["result"]["value"]


def chart_problems(state: dict) -> list[str]:
    problems = []
    if not state["charts"]:
        problems.append("no chart on the page (no element passed to vegaEmbed)")
    for chart in state["charts"]:
        if not chart["found"]:
            problems.append(f"chart #{chart['id']}: no element with this id")
        elif not chart["graphic"]:
            problems.append(f"chart #{chart['id']}: drew nothing (no svg or canvas)")
        elif chart["width"] <= 0 or chart["height"] <= 0:
            problems.append(f"chart #{chart['id']}: its {chart['graphic']} is {chart['width']}x{chart['height']}")
    for image in state["images"]:
        if not image["complete"] or image["width"] <= 0:
            problems.append(f"image {image['src']}: not loaded")
    return problems


def check(page: Path, screenshot: Path | None, timeout: float) -> int:
    binary = find_chromium()
    if not binary:
        print("check_page: Chromium not found (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
        return 2
    browser = Browser(binary, timeout)
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            browser.send(method, session=session)
        browser.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session,
        )
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        started = time.monotonic()
        browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session)
        # wait until every chart is drawn and every image loaded, then a little longer for late errors
        while True:
            state = page_state(browser, session)
            complete = state["ready"] == "complete"
            drawn = complete and not chart_problems(state)
            failing = complete and time.monotonic() - started > 2 and problems_in(browser.events)[0]
            if drawn or failing or time.monotonic() - started > timeout:
                break
            browser.pump(0.25)
        browser.pump(0.5)
        state = page_state(browser, session)
        elapsed = time.monotonic() - started
        if screenshot:
            size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            width, height = int(size["width"]), int(size["height"])
            shot = browser.send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "captureBeyondViewport": True,
                    "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
                },
                session,
            )
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
    except (BrowserGone, RuntimeError) as error:
        print(f"check_page: {error}", file=sys.stderr)
        return 2
    finally:
        browser.close()

    errors, warnings, requests = problems_in(browser.events)
    problems = chart_problems(state) + errors
    print(f"{page}: {page.stat().st_size / 1e6:.2f} MB, drawn in {elapsed:.1f} s with networking disabled")
    for chart in state["charts"]:
        print(f"  chart #{chart['id']}: {chart['graphic']} {chart['width']}x{chart['height']}")
    for image in state["images"]:
        print(f"  image {image['src']}: {'loaded' if image['complete'] and image['width'] else 'NOT loaded'}")
    remote = [url for url in requests if not url.startswith(LOCAL_SCHEMES)]
    print(f"  requests: {len(requests)}, of which not local: {len(remote)}")
    for warning, count in Counter(warnings).items():
        print(f"  warning{f' (x{count})' if count > 1 else ''}: {warning[:300]}")
    if screenshot:
        print(f"  screenshot: {screenshot} ({width}x{height})")
    for problem in problems:
        print(f"FAIL {problem[:500]}")
    print(
        f"{len(state['charts'])} charts and {len(state['images'])} images checked: " + ("FAILED" if problems else "ok")
    )
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="the page, e.g. dvc_plots/index.html")
    parser.add_argument("screenshot", type=Path, nargs="?", help="where to write a PNG of the whole page")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for the charts (default 60)")
    args = parser.parse_args()
    if not args.page.is_file():
        parser.error(f"no page at {args.page}")
    return check(args.page, args.screenshot, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
