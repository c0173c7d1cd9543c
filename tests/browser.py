"""Debian's ``chromium``, headless, as a person's browser in the tests.

* :func:`dump_dom` and :func:`screenshot` are chromium's own ``--dump-dom`` and ``--screenshot``;
* :class:`Browser` drives one tab over the DevTools protocol on a pipe (``--remote-debugging-pipe``: NUL-separated
  JSON on file descriptors 3 and 4, no extra library), to click a button and read what the page then shows.

There is no fallback: without chromium the test fails (:func:`chromium`), as ``make test`` installs it.

    >>> with Browser() as browser:
    ...     browser.open("http://127.0.0.1:8090/?token=...")
    ...     browser.click("document.querySelector('button.restore')")
    ...     browser.evaluate("document.querySelector('#message').textContent")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
FLAGS += ["--disable-extensions", "--disable-background-networking", "--hide-scrollbars"]


def chromium() -> str:
    """The chromium binary; a test that needs it FAILS without it (``make system-deps`` installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium not found on PATH: install Debian's `chromium` package (make system-deps does)")
    return found


def dump_dom(url: str, *, budget_ms: int = 10_000) -> str:
    """The DOM chromium builds for ``url`` (after scripts, were there any), as HTML."""
    argv = [chromium(), *FLAGS, f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(url: str, path: Path, *, width: int = 1280, height: int = 900) -> Path:
    """A PNG of ``url`` as chromium renders it, at ``width`` × ``height``."""
    argv = [chromium(), *FLAGS, f"--window-size={width},{height}", "--virtual-time-budget=10000"]
    argv += [f"--screenshot={path}", url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert path.exists(), result.stderr[-2000:]
    return path


class Browser:
    """One headless chromium tab, driven over the DevTools protocol."""

    def __init__(self) -> None:
        self._next_id = 0
        self._buffer = b""
        self._session = ""

    def __enter__(self) -> Browser:
        to_chromium, self._writer = os.pipe()
        self._reader, from_chromium = os.pipe()

        def wire() -> None:  # in the child: our pipes become fds 3 (commands) and 4 (answers), inheritable
            a, b = os.dup(to_chromium), os.dup(from_chromium)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.process = subprocess.Popen(
            [chromium(), *FLAGS, "--remote-debugging-pipe", "about:blank"],
            preexec_fn=wire,  # noqa: PLW1509 - only dup2 before exec; the test process has no other threads forking
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chromium)
        os.close(from_chromium)
        target = self.command("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.command("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.command("Page.enable")
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        self.process.kill()
        self.process.wait(10)
        os.close(self._writer)
        os.close(self._reader)

    def open(self, url: str, timeout: float = 30) -> None:
        """Navigate and wait until the page (and its images) finished loading."""
        self.command("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'", timeout)

    def click(self, element: str, timeout: float = 60) -> None:
        """Click the element a JavaScript expression finds (a form's submit button: the browser posts the form),
        and wait for the next page to load."""
        before = self.evaluate("performance.timeOrigin")
        found = self.evaluate(f"(() => {{ const e = {element}; if (!e) return false; e.click(); return true; }})()")
        assert found, f"nothing on the page for {element}"
        self.wait_for(f"performance.timeOrigin !== {before} && document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str) -> Any:
        result = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except AssertionError:
                pass  # the page is between documents
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    def command(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session and not method.startswith("Target."):
            message["sessionId"] = self._session
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._next_id:
                    if "error" in answer:
                        raise AssertionError(f"{method}: {answer['error']}")
                    return answer.get("result", {})
            chunk = os.read(self._reader, 1 << 16)
            if not chunk:
                raise AssertionError(f"chromium closed the DevTools pipe during {method}")
            self._buffer += chunk
        raise AssertionError(f"{method}: no answer in {timeout} s")
