"""Headless Chromium driven over the DevTools protocol: open a page, click, take a PNG.

For screenshots that need a click first (a span's details in the Jaeger UI); a plain page is one
``chromium --headless --screenshot`` call in take.py. Uses websocket-client (a dependency of the
Kubernetes client funcd already installs).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import requests
import websocket

from tests.e2e.stack_procs import HOST, wait_until


class Page:
    """One headless Chromium with one page; ``close()`` stops the browser."""

    def __init__(self, chromium: str, size: str) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="funcd-chromium-"))
        argv = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--remote-debugging-port=0", f"--remote-debugging-address={HOST}",
            f"--user-data-dir={self.profile}", f"--window-size={size}", "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._id = 0
        try:
            port_file = self.profile / "DevToolsActivePort"
            wait_until(lambda: port_file.is_file() and port_file.read_text().strip(), "Chromium's port", 30)
            port = port_file.read_text().split()[0]
            targets = requests.get(f"http://{HOST}:{port}/json/list", timeout=5).json()
            page = next(t for t in targets if t["type"] == "page")
            self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30)
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events in between are skipped)."""
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply.get("result", {}).get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, what: str, timeout: float = 30) -> Any:
        """Evaluate ``expression`` until it is truthy (an element rendered, a click done)."""
        return wait_until(lambda: self.evaluate(expression), what, timeout, interval=0.2)

    def png(self, out: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)
