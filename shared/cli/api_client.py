"""A small async client for the CLI: JSON calls, streamed multipart uploads with progress, SSE."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
UPLOAD_CHUNK = 1 << 20


@dataclass
class SseFrame:
    event: str = "message"
    data: str = ""
    id: str | None = None


class ApiFailure(Exception):
    def __init__(self, status: int, body: dict | str):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        message = error.get("message") if isinstance(error, dict) else None
        super().__init__(f"HTTP {status}: {message or body}")
        self.status = status
        self.body = body


def base_url_from(arg: str | None) -> str:
    return (arg or os.environ.get("LORASERVE_BASE_URL") or os.environ.get("OPENAI_BASE_URL")
            or DEFAULT_BASE_URL).rstrip("/")


def api_key_from(arg: str | None) -> str:
    key = arg or os.environ.get("LORASERVE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    if not key:
        raise SystemExit("no API key: pass --api-key or set LORASERVE_API_KEY")
    return key


class Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.done = label, max(total, 1), 0

    def advance(self, n: int) -> None:
        self.done += n
        width = 30
        filled = int(width * self.done / self.total)
        sys.stderr.write(f"\r{self.label:<32} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done / 1e6:8.1f}/{self.total / 1e6:.1f} MB")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


async def _file_chunks(path: Path, progress: Progress) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(UPLOAD_CHUNK):
            progress.advance(len(chunk))
            yield chunk


class ApiClient:
    def __init__(self, base_url: str, api_key: str):
        self.base_url = base_url
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {api_key}"},
                                             timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))

    async def close(self) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, **kwargs) -> dict:
        async with self.session.request(method, self.base_url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if text else {}
            except json.JSONDecodeError:
                body = text
            if resp.status >= 400:
                raise ApiFailure(resp.status, body)
            return body

    async def upload_file(self, path: Path, purpose: str = "lora") -> dict:
        progress = Progress(path.name, path.stat().st_size)
        form = aiohttp.FormData()
        form.add_field("purpose", purpose)
        form.add_field("file", _file_chunks(path, progress), filename=path.name,
                       content_type="application/octet-stream")
        return await self.call("POST", "/files", data=form)

    async def sse(self, path: str, params: dict | None = None, headers: dict | None = None,
                  timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[SseFrame]:
        """Yield the frames of a server-sent event stream: those with data, and those with only an id."""
        async with self.session.get(self.base_url + path, params=params, headers=headers,
                                    timeout=timeout or self.session.timeout) as resp:
            if resp.status >= 400:
                raise ApiFailure(resp.status, await resp.text())
            frame = SseFrame()
            async for raw in resp.content:
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if frame.data or frame.id is not None:
                        yield frame
                    frame = SseFrame()
                elif line.startswith("event:"):
                    frame.event = line[6:].strip()
                elif line.startswith("data:"):
                    frame.data = f"{frame.data}\n{line[5:].lstrip()}" if frame.data else line[5:].lstrip()
                elif line.startswith("id:"):
                    frame.id = line[3:].strip()
