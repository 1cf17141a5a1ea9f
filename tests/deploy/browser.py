"""A real browser for tests: Debian's headless Chromium, driven over the Chrome DevTools Protocol with
`websockets` (no Selenium, no Playwright download). The flags keep it off the network on a closed machine."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import websockets

from tests.deploy.prefect_server import free_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required")


class Page:
    """One tab: navigate, evaluate JavaScript, wait for a condition in the page."""

    def __init__(self, socket: Any) -> None:
        self.socket, self.ids = socket, itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self.ids)
        await self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            message = json.loads(await self.socket.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def wait_for(self, expression: str, seconds: float) -> Any:
        """The first truthy value of `expression` in the page within `seconds`."""
        deadline = time.monotonic() + seconds
        value = None
        while time.monotonic() < deadline:
            try:
                value = await self.evaluate(expression)
            except RuntimeError:
                value = None  # the page is between documents
            if value:
                return value
            await asyncio.sleep(0.25)
        raise AssertionError(f"{expression!r} not true within {seconds:g} s (last: {value!r})")


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """Headless Chromium with a fresh profile; its first tab."""
    port = free_port()
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        socket_url = await _page_socket(port, process)
        async with websockets.connect(socket_url, max_size=None) as socket:
            page = Page(socket)
            await page.call("Page.enable")
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _page_socket(port: int, process: subprocess.Popen, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"chromium exited with {process.returncode}")
            try:
                targets = (await http.get(f"http://127.0.0.1:{port}/json", timeout=2)).json()
                pages = [t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page"]
                if pages:
                    return pages[0]
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"chromium's DevTools did not answer on port {port} within {seconds:g} s")
