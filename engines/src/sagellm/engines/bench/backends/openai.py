"""The HTTP target: any OpenAI-compatible server (ours, vLLM, SGLang, llama.cpp's server, ...).

Each request is one streaming ``POST {base_url}/completions`` with
``stream_options.include_usage``, so the server's own token counts (and,
where it reports them, ``prompt_tokens_details.cached_tokens``) come back
in the last chunk. Prompts go out as text -- our token ids decoded with
special tokens kept -- which every server accepts; ``send_token_ids`` sends
the ids themselves for exact lengths when the server has the same tokenizer.

All requests of a run share one asyncio loop and one connection pool; the
dispatcher decides when each is sent, exactly as for the in-process engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from sagellm.core.errors import InvalidRequestError
from sagellm.engines.bench.backends.base import DEFAULT_GENERATION, GenerationOptions, TargetInfo
from sagellm.engines.bench.backends.http_stream import HTTPStatusError, PlainHTTPTarget, post_stream_lines
from sagellm.engines.bench.backends.sse import DONE, StreamChunk, parse_chunk, sse_data
from sagellm.engines.bench.dispatcher import Dispatcher
from sagellm.engines.bench.progress import progress_bar
from sagellm.engines.bench.prompt_resolver import PromptResolver, ResolvedPrompt
from sagellm.engines.bench.record import BackendStats, RequestRecord, RunOutcome
from sagellm.engines.bench.request import BenchRequest
from sagellm.engines.bench.tokenizer_source import TokenizerLike
from sagellm.engines.model.config import ModelConfig

Clock = Callable[[], float]


class OpenAIBackend:
    def __init__(
        self,
        base_url: str,
        tokenizer: TokenizerLike,
        model_config: ModelConfig | None = None,
        served_model: str | None = None,
        api_key: str | None = None,
        generation: GenerationOptions = DEFAULT_GENERATION,
        max_model_len: int | None = None,
        send_token_ids: bool = False,
        timeout_s: float = 600.0,
        show_progress: bool = False,
    ) -> None:
        try:
            import httpx  # imported here: only this backend needs it
        except ImportError:
            raise InvalidRequestError("--backend openai needs httpx: pip install httpx") from None
        self._httpx = httpx
        self.base_url = base_url.rstrip("/") + "/"
        self._plain = PlainHTTPTarget.parse(self.base_url)
        self.tokenizer = tokenizer
        self.generation = generation
        self.send_token_ids = send_token_ids
        self.timeout_s = timeout_s
        self.show_progress = show_progress
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        if served_model is None:
            served_model, listed_len = self._discover_model()
            max_model_len = max_model_len or listed_len  # vLLM and sageLLM list it; clipping needs it
        self.max_model_len = max_model_len
        self.served_model = served_model
        self.info = TargetInfo(
            backend="openai",
            model=self.served_model,
            device="remote",
            world_size=None,
            max_model_len=max_model_len,
            settings={"base_url": base_url, "send_token_ids": send_token_ids},
            model_config=model_config,
        )

    def warmup(self) -> None:
        request = BenchRequest("warmup", 4, prompt_token_ids=tuple(self.tokenizer.encode("Hello")))
        outcome = self.run("warmup", [request], 1, show_progress=False)
        error = outcome.records[0].error
        if error:
            raise InvalidRequestError(f"the server at {self.base_url} failed a warm-up request: {error}")

    def run(
        self, label: str, requests: Sequence[BenchRequest], concurrency: int | None, show_progress: bool | None = None
    ) -> RunOutcome:
        shown = self.show_progress if show_progress is None else show_progress
        return asyncio.run(self._run(label, requests, concurrency, shown))

    async def _run(
        self, label: str, requests: Sequence[BenchRequest], concurrency: int | None, show_progress: bool
    ) -> RunOutcome:
        dispatcher = Dispatcher(requests, concurrency)
        resolver = PromptResolver(self.tokenizer, self.max_model_len)
        records: dict[str, RequestRecord] = {}
        tasks: set[asyncio.Task[tuple[RequestRecord, str]]] = set()
        start = time.perf_counter()

        def now() -> float:
            return time.perf_counter() - start

        async with contextlib.AsyncExitStack() as stack:
            client = None if self._plain is not None else await stack.enter_async_context(self._httpx_client())
            with progress_bar(label, len(requests), show_progress) as bar:
                while not dispatcher.done:
                    for request, due in dispatcher.due(now()):
                        prompt = resolver.resolve(request)
                        record = RequestRecord(request.request_id, due, len(prompt.token_ids), prompt.max_tokens)
                        record.tag = request.tag
                        records[request.request_id] = record
                        tasks.add(asyncio.create_task(self._send(client, prompt, record, now)))
                    upcoming = dispatcher.next_time()
                    wait = None if upcoming is None else max(0.0, upcoming - now())
                    if not tasks:
                        await asyncio.sleep(wait if wait is not None else 0.01)
                        continue
                    finished, _ = await asyncio.wait(tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                    for task in finished:
                        tasks.discard(task)
                        record, text = task.result()
                        resolver.answered(record.request_id, text)
                        dispatcher.finished(record.request_id, now())
                        bar.update(1)
        ends = [r.end_s for r in records.values() if r.end_s is not None]
        ordered = [records[r.request_id] for r in requests if r.request_id in records]
        return RunOutcome(ordered, max(ends, default=now()), BackendStats(), resolver.num_clipped)

    async def _send(
        self, client: Any, prompt: ResolvedPrompt, record: RequestRecord, now: Clock
    ) -> tuple[RequestRecord, str]:
        """Stream one completion into ``record``; never raises (a failure is the record's error)."""
        parts: list[str] = []
        last = StreamChunk()
        usage: dict[str, int | None] = {}
        try:
            async for line in self._stream_lines(client, self._payload(prompt)):
                data = sse_data(line)
                if data is None:
                    continue
                if data == DONE:
                    break
                last = parse_chunk(data)
                if last.error:
                    record.error = last.error
                    break
                if last.text:
                    record.token_times_s.append(now())
                    parts.append(last.text)
                record.finish_reason = last.finish_reason or record.finish_reason
                for key in ("completion_tokens", "prompt_tokens", "cached_tokens"):
                    if getattr(last, key) is not None:
                        usage[key] = getattr(last, key)
        except HTTPStatusError as exc:
            record.error = str(exc)
        except Exception as exc:  # connection refused, timeout, protocol error: the request failed
            record.error = f"{type(exc).__name__}: {exc}"
        record.end_s = now()
        record.num_output_tokens = usage.get("completion_tokens") or len(record.token_times_s)
        record.num_prompt_tokens = usage.get("prompt_tokens") or record.num_prompt_tokens
        record.num_cached_tokens = usage.get("cached_tokens")
        if record.error is None and not record.token_times_s:
            record.error = "the stream ended without any text"
        return record, "".join(parts)

    def _httpx_client(self) -> Any:
        limits = self._httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = self._httpx.Timeout(self.timeout_s, connect=30.0)
        return self._httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout, limits=limits)

    async def _stream_lines(self, client: Any, payload: dict[str, Any]) -> AsyncIterator[str]:
        """The response's lines: through the lean client for plain http, through httpx otherwise."""
        if self._plain is not None:
            async for line in post_stream_lines(self._plain, "completions", payload, self.headers, self.timeout_s):
                yield line
            return
        async with client.stream("POST", "completions", json=payload) as response:
            if response.status_code != 200:
                raise HTTPStatusError(response.status_code, (await response.aread()).decode("utf-8", "replace"))
            async for line in response.aiter_lines():
                yield line

    def _payload(self, prompt: ResolvedPrompt) -> dict[str, Any]:
        text: Any = prompt.token_ids if self.send_token_ids else self.tokenizer.decode(prompt.token_ids, False)
        payload: dict[str, Any] = {
            "model": self.served_model,
            "prompt": text,
            "max_tokens": prompt.max_tokens,
            "temperature": self.generation.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.generation.ignore_eos:
            payload["ignore_eos"] = True  # vLLM, SGLang, llama.cpp and sageLLM honour it; strict servers: --stop-at-eos
        return payload

    def _discover_model(self) -> tuple[str, int | None]:
        """The first model the server lists at ``GET /models`` (what ``model`` must name) and its context length."""
        try:
            response = self._httpx.get(self.base_url + "models", headers=self.headers, timeout=30.0)
            response.raise_for_status()
            first = (response.json().get("data") or [])[0]
            length = first.get("max_model_len")
            return str(first["id"]), int(length) if isinstance(length, int) and length > 0 else None
        except Exception as exc:
            raise InvalidRequestError(
                f"cannot list models at {self.base_url}models ({type(exc).__name__}: {exc}); "
                "is the server up? (or pass --served-model-name)"
            ) from None
