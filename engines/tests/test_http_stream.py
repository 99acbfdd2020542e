"""The benchmark's lean streaming client: chunked and plain bodies, split lines, errors with their body."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sagellm.engines.bench.backends.http_stream import HTTPStatusError, PlainHTTPTarget, post_stream_lines

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def respond(*pieces: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
        )
        await reader.readexactly(length)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)  # arrives in separate reads
        writer.close()

    return handle


def collect(handler: Handler) -> list[str]:
    async def run() -> list[str]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        target = PlainHTTPTarget.parse(f"http://127.0.0.1:{port}/v1/")
        assert target is not None and target.path_prefix == "/v1"
        try:
            return [line async for line in post_stream_lines(target, "completions", {"a": 1}, {}, 10.0)]
        finally:
            server.close()

    return asyncio.run(run())


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_chunked_lines_split_across_chunks_are_joined() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n"
    lines = collect(respond(head, chunk(b'data: {"x"'), chunk(b": 1}\r\n\r\ndata: [DONE]\n\n"), b"0\r\n\r\n"))
    assert lines == ['data: {"x": 1}', "", "data: [DONE]", ""]


def test_a_plain_body_is_read_to_the_end() -> None:
    lines = collect(respond(b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", b"data: 1\n\ntail"))
    assert lines == ["data: 1", "", "tail"]


def test_an_error_status_raises_with_the_body() -> None:
    with pytest.raises(HTTPStatusError, match=r"HTTP 429: .*queue is full") as raised:
        collect(
            respond(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 30\r\n\r\n", b'{"error": "the queue is full"}')
        )
    assert raised.value.status == 429


def test_https_is_left_to_httpx() -> None:
    assert PlainHTTPTarget.parse("https://example.com/v1") is None
    assert PlainHTTPTarget.parse("http://localhost/v1") == PlainHTTPTarget("localhost", 80, "/v1")
