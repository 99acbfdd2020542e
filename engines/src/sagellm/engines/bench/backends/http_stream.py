"""A lean HTTP/1.1 client for one streamed POST: the benchmark's own CPU must not slow the server it times.

The client shares the machine with the server it measures. httpx (with
httpcore, anyio and h11 under it) spent ~0.5 ms of CPU per streamed token
here, which on 2 cores was taken from the server's compute threads and
showed up as server latency. This client reads the response with asyncio
streams and decodes chunked transfer encoding itself: one plain-``http``
request per connection (``Connection: close``), lines handed out as they
arrive. ``https`` URLs, and anything else it does not speak, go through httpx.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

HEADER_LIMIT = 64 * 1024


class HTTPStatusError(Exception):
    """A response other than 200; ``body`` holds (the start of) what the server said."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class PlainHTTPTarget:
    host: str
    port: int
    path_prefix: str

    @classmethod
    def parse(cls, base_url: str) -> PlainHTTPTarget | None:
        """The target of an ``http://`` base URL; None for anything this client does not speak (https)."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            return None
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


async def post_stream_lines(
    target: PlainHTTPTarget, path: str, payload: Mapping[str, Any], headers: Mapping[str, str], timeout_s: float
) -> AsyncIterator[str]:
    """POST ``payload`` as JSON and yield the response body's lines (without line endings) as they arrive."""
    body = json.dumps(payload).encode()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(target.host, target.port), timeout_s)
    try:
        writer.write(_request_head(target, path, len(body), headers) + body)
        await writer.drain()
        status, response_headers = await asyncio.wait_for(_read_head(reader), timeout_s)
        chunks = _chunked_body(reader) if "chunked" in response_headers.get("transfer-encoding", "") else _raw(reader)
        if status != 200:
            text = b"".join([piece async for piece in chunks]).decode("utf-8", "replace")
            raise HTTPStatusError(status, text)
        pending = b""
        async for piece in chunks:
            pending += piece
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")
    finally:
        writer.close()


def _request_head(target: PlainHTTPTarget, path: str, length: int, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"POST {target.path_prefix}/{path.lstrip('/')} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {length}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEADER_LIMIT:
        raise ValueError("response headers too long")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    return int(fields[1]), headers


async def _chunked_body(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size_line = await reader.readline()
        if not size_line:
            raise ConnectionError("the server closed the stream mid-response")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            return
        data = await reader.readexactly(size + 2)  # the chunk and its CRLF
        yield data[:-2]


async def _raw(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while piece := await reader.read(65536):
        yield piece
