"""Run pubsub-consumer with a local daprd, publish three orders, show what the function did."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FUNCD = [sys.executable, "-m", "functions_framework.cli"]


def main() -> int:
    server = subprocess.Popen(
        [*FUNCD, "run", str(HERE), "--port", "0", "--dapr-port", "0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in server.stdout or ()], daemon=True).start()

    def show_until(text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            print("funcd |", line.rstrip())
            if text in line:
                return True
        return False

    try:
        if not show_until("serving Dapr app callbacks", 30):
            return 1
        for order in ({"customer": "ada", "amount": 5}, {"customer": "ada", "amount": 7}, "not an order"):
            out = subprocess.run(
                [*FUNCD, "publish", "orders", json.dumps(order)], capture_output=True, text=True
            )
            print("$ funcd publish orders", json.dumps(order), "->", (out.stdout or out.stderr).strip())
        return 0 if show_until("the handler dropped it", 15) else 1
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
