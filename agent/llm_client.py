"""A client for an OpenAI-compatible (vLLM) server that returns pydantic objects via guided JSON decoding.

Transport (timeouts, retries with backoff on 429/5xx/connection errors, sync and async) is the
``openai`` library's, the repair of answers cut off mid-JSON is ``json-repair``'s; this module adds the
schema, the retries that give a cut-off answer more room, and clear errors (``llm_errors``).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import json_repair
import openai
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vplink.agent.llm_errors import (SERVE_HINT, LLMConfigError, LLMError, LLMHTTPError, LLMProtocolError,
                                     LLMRequestError, LLMResponseError, LLMTimeoutError, LLMUnavailableError,
                                     error_message, one_line)
from vplink.core.settings import settings

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]

class LLMConfig(BaseModel):
    """Where the model server is and how to sample from it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default_factory=lambda: settings().llm_url,
                     description="base URL ('/v1' is added when missing); default $VPLINK_LLM_URL or 127.0.0.1:8801")
    model: str | None = Field(default=None, description="None: the first model the server lists")
    timeout_s: float = Field(default=300.0, gt=0, description="seconds one request may take to answer")
    connect_timeout_s: float = Field(default=5.0, gt=0, description="seconds to open a connection")
    health_timeout_s: float = Field(default=10.0, gt=0, description="seconds the server may take to list its models")
    max_retries: int = Field(default=2, ge=0, description="extra attempts after a malformed answer, a 429/5xx "
                                                          "or a dropped connection (with backoff)")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, gt=0)
    vision: bool = False
    max_concurrency: int = Field(default=8, gt=0, description="requests in flight at once (async)")
    image_max_side: int | None = Field(default=1024, description="larger images are shrunk before sending")
    api_key: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request")

    def base_url(self) -> str:
        """The URL ending in ``/v1``; a URL that is not http(s)://host[:port][/path] is refused."""
        url = self.url.strip().rstrip("/")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise LLMConfigError(f"model server URL {self.url!r} is not an http(s) URL. "
                                 "Fix: pass --llm-url like http://127.0.0.1:8801/v1")
        return url if url.endswith("/v1") else url + "/v1"


#: What a server answered: text, finish reason, prompt and completion tokens, and (when asked for) the
#: log-probability of each generated token.
_Answer = tuple[str, "str | None", int, int, "list[tuple[str, float]] | None"]


class CompletionInfo(BaseModel):
    """What one structured completion cost and how it went."""

    raw_text: str
    #: (token, log-probability) of each generated token of the answer that was parsed, when requested.
    token_logprobs: list[tuple[str, float]] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    repaired: bool = False
    finish_reason: str | None = None
    model: str = ""


# ---------------------------------------------------------------- parsing

def parse_structured(text: str, response_model: type[T]) -> tuple[T, bool]:
    """Validate ``text`` as ``response_model``; an answer cut short (the token budget ran out mid-JSON) or wrapped
    in prose is repaired by ``json-repair`` first. Returns (instance, repaired)."""
    try:
        return response_model.model_validate_json(text), False
    except ValidationError:
        pass
    value = json_repair.loads(text)
    if not isinstance(value, (dict, list)) or not value:
        raise LLMResponseError(f"answer is not JSON for {response_model.__name__} (no JSON object in it)", text)
    try:
        return response_model.model_validate(value), True
    except ValidationError as exc:
        errs = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()[:5])
        raise LLMResponseError(f"answer does not fit {response_model.__name__} ({errs})", text) from None


# ---------------------------------------------------------------- request building

def encode_image(image: Image.Image, max_side: int | None = None, quality: int = 90) -> str:
    """A ``data:image/jpeg;base64,...`` URL for ``image``."""
    img = image.convert("RGB")
    if max_side and max(img.size) > max_side:
        img = img.copy()
        img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _with_images(messages: Sequence[Message], images: Sequence[Image.Image], max_side: int | None) -> list[Message]:
    """Copy ``messages`` with the images put before the text of the last user message."""
    out = [dict(m) for m in messages]
    users = [i for i, m in enumerate(out) if m.get("role") == "user"]
    if not users:
        raise LLMRequestError("images need a user message to go into; add {'role': 'user', 'content': ...}")
    msg = out[users[-1]]
    content = msg.get("content") or ""
    parts = list(content) if isinstance(content, list) else [{"type": "text", "text": str(content)}]
    img_parts = [{"type": "image_url", "image_url": {"url": encode_image(im, max_side)}} for im in images]
    msg["content"] = img_parts + parts
    return out


def response_format(response_model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAI ``response_format`` that makes vLLM decode JSON under the model's schema."""
    return {"type": "json_schema",
            "json_schema": {"name": response_model.__name__, "schema": response_model.model_json_schema(),
                            "strict": True}}


# ---------------------------------------------------------------- client

class LLMClient:
    """Sends chat requests to a vLLM server through the ``openai`` client; sync and async, with repair."""

    def __init__(self, config: LLMConfig | None = None) -> None:
        self.config = config or LLMConfig()
        self.base_url = self.config.base_url()
        self._timeout_cfg = openai.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        # vLLM wants no key, but the client insists on one
        self._client = openai.OpenAI(base_url=self.base_url, api_key=self.config.api_key or "EMPTY",
                                     timeout=self._timeout_cfg, max_retries=self.config.max_retries)
        self._aclient: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model: str | None = self.config.model

    # -- errors
    def _unavailable(self) -> LLMUnavailableError:
        return LLMUnavailableError(f"no model server at {self.base_url}; {SERVE_HINT}")

    def _timeout(self, seconds: float, *, listing: bool = False) -> LLMTimeoutError:
        if listing:  # the health check: a live vLLM server lists its models at once
            return LLMTimeoutError(f"model server at {self.base_url} accepted the connection but did not answer "
                                   f"within {seconds:g} s. Fix: check that a vLLM server (`vplink llm serve`) runs "
                                   "there and has finished starting; a lower --llm-timeout shortens this wait")
        tries = f" ({self.config.max_retries + 1} tries)" if self.config.max_retries else ""
        return LLMTimeoutError(f"model server at {self.base_url} did not answer within {seconds:g} s{tries}. Fix: "
                               "raise --llm-timeout (LLMConfig.timeout_s) for slow answers, or lower "
                               "max_tokens/concurrency")

    def _not_openai(self, what: str) -> LLMProtocolError:
        return LLMProtocolError(f"the server at {self.base_url} answered with {what}, not the OpenAI API. "
                                "Fix: pass the vLLM server's base URL, e.g. --llm-url http://127.0.0.1:8801/v1")

    def _translate(self, exc: Exception, seconds: float, *, listing: bool = False) -> LLMError:
        """Our error, with the URL and the fix, for an ``openai`` exception."""
        if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
            return self._timeout(seconds, listing=listing)
        if isinstance(exc, openai.APIConnectionError):
            return self._unavailable()
        if isinstance(exc, openai.APIStatusError):
            status, message = exc.status_code, error_message(exc.response)
            hint = ""
            if status == 404 and message.startswith("an HTML page"):
                hint = ". Fix: the URL must be the vLLM server's OpenAI base URL, ending in /v1"
            elif status in (401, 403):
                hint = ". Fix: pass the server's API key (LLMConfig.api_key)"
            elif status >= 500:
                retries = 0 if listing else self.config.max_retries  # the health check does not retry
                hint = (f" (after {retries} retries)" if retries else "") + ". Fix: check the server's log"
            return LLMHTTPError(f"model server at {self.base_url} answered HTTP {status}: {message}{hint}",
                                status, message)
        return self._not_openai(f"something unexpected ({type(exc).__name__}: {one_line(str(exc))})")

    # -- discovery
    def models(self) -> list[str]:
        """The model names the server serves (a short timeout and no retries: this is the health check)."""
        seconds = min(self.config.health_timeout_s, self.config.timeout_s)
        quick = self._client.with_options(max_retries=0,
                                          timeout=openai.Timeout(seconds, connect=self.config.connect_timeout_s))
        try:
            # the raw answer: a web page served with status 200 must be told apart from a model list
            response = quick.models.with_raw_response.list().http_response
        except openai.OpenAIError as exc:
            raise self._translate(exc, seconds, listing=True) from None
        try:
            data = response.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
            raise self._not_openai(one_line(response.text) if response.text.strip()[:1] == "<"
                                   else "something other than a model list")
        return [m["id"] for m in data]

    def health(self) -> bool:
        """Whether the server answers and lists at least one model."""
        try:
            return bool(self.models())
        except LLMError:
            return False

    @property
    def model(self) -> str:
        """The model name requests use (auto-detected once when not configured)."""
        return self._model if self._model is not None else self.check()

    def check(self) -> str:
        """Ask the server for its models now (a few seconds at most); return the model requests will use."""
        names = self.models()
        if self._model is None:
            if not names:
                raise LLMUnavailableError(f"the server at {self.base_url} lists no model; check its log")
            self._model = names[0]
        elif self._model not in names:
            raise LLMConfigError(f"the server at {self.base_url} does not serve model {self._model!r}. "
                                 f"Fix: pass --llm-model with one of: {', '.join(names) or '(none)'}")
        return self._model

    # -- request / response
    def _request(self, messages: Sequence[Message], response_model: type[BaseModel] | None,
                 images: Sequence[Image.Image], attempt: int, max_tokens: int | None,
                 extra: dict[str, Any] | None = None, logprobs: bool = False) -> dict[str, Any]:
        if images and not self.config.vision:
            raise LLMRequestError(f"{len(images)} image(s) given but LLMConfig.vision is False; "
                                  "set vision=True for a vision-language server or send no images")
        msgs = _with_images(messages, images, self.config.image_max_side) if images else [dict(m) for m in messages]
        # a retry at temperature 0 would repeat the same answer: add a little noise
        temp = self.config.temperature if attempt == 1 else max(self.config.temperature, 0.3)
        request: dict[str, Any] = {"model": self.model, "messages": msgs, "temperature": temp,
                                   "max_tokens": max_tokens or self.config.max_tokens}
        if response_model is not None:
            request["response_format"] = response_format(response_model)  # vLLM's guided JSON decoding
        if logprobs:
            request["logprobs"] = True  # each generated token's log-probability (an OpenAI field)
        body = {**self.config.extra_body, **(extra or {})}
        if body:
            request["extra_body"] = body  # vLLM's own sampling fields (ignore_eos, ...)
        return request

    def _read(self, resp: Any) -> _Answer:
        choices = getattr(resp, "choices", None)
        if not choices:
            raise self._not_openai(one_line(resp) if isinstance(resp, str) else "an answer without choices")
        choice = choices[0]
        text = (choice.message.content if choice.message else None) or ""
        usage = resp.usage
        content = getattr(getattr(choice, "logprobs", None), "content", None)
        logprobs = [(t.token, float(t.logprob)) for t in content] if content else None
        return text, choice.finish_reason, int(getattr(usage, "prompt_tokens", 0) or 0), \
            int(getattr(usage, "completion_tokens", 0) or 0), logprobs

    def _create(self, request: dict[str, Any]) -> _Answer:
        try:
            return self._read(self._client.chat.completions.create(**request))
        except openai.OpenAIError as exc:
            raise self._translate(exc, self.config.timeout_s) from None

    async def _acreate(self, request: dict[str, Any]) -> _Answer:
        client, sem = self._async_parts()
        async with sem:
            try:
                return self._read(await client.chat.completions.create(**request))
            except openai.OpenAIError as exc:
                raise self._translate(exc, self.config.timeout_s) from None

    def complete_structured(self, messages: Sequence[Message], response_model: type[T],
                            images: Sequence[Image.Image] = (), max_tokens: int | None = None,
                            logprobs: bool = False) -> tuple[T, CompletionInfo]:
        """Ask for an answer under ``response_model``'s JSON schema; return the instance and its cost
        (with ``logprobs``, each generated token's log-probability in ``info.token_logprobs``)."""
        run = _Attempts(self, response_model, max_tokens, logprobs)
        while True:
            try:
                return run.parse(self._create(run.request(messages, images)))
            except LLMResponseError as exc:
                run.failed(exc)

    async def acomplete_structured(self, messages: Sequence[Message], response_model: type[T],
                                   images: Sequence[Image.Image] = (), max_tokens: int | None = None,
                                   logprobs: bool = False) -> tuple[T, CompletionInfo]:
        """Async :meth:`complete_structured`; at most ``max_concurrency`` run at once."""
        _ = self.model  # resolve the model name once, before the requests fan out
        run = _Attempts(self, response_model, max_tokens, logprobs)
        while True:
            try:
                return run.parse(await self._acreate(run.request(messages, images)))
            except LLMResponseError as exc:
                run.failed(exc)

    def complete_text(self, messages: Sequence[Message], max_tokens: int | None = None,
                      images: Sequence[Image.Image] = (), **extra: Any) -> tuple[str, CompletionInfo]:
        """A free-text completion (no schema); ``extra`` goes to vLLM (e.g. ``ignore_eos=True``)."""
        t0 = time.perf_counter()
        answer = self._create(self._request(messages, None, images, 1, max_tokens, extra))
        return answer[0], self._info(answer, t0)

    async def acomplete_text(self, messages: Sequence[Message], max_tokens: int | None = None,
                             images: Sequence[Image.Image] = (), **extra: Any) -> tuple[str, CompletionInfo]:
        """Async :meth:`complete_text`."""
        t0 = time.perf_counter()
        _ = self.model
        answer = await self._acreate(self._request(messages, None, images, 1, max_tokens, extra))
        return answer[0], self._info(answer, t0)

    def _info(self, answer: _Answer, t0: float) -> CompletionInfo:
        text, finish, p_tok, c_tok, _ = answer
        return CompletionInfo(raw_text=text, prompt_tokens=p_tok, completion_tokens=c_tok,
                              seconds=time.perf_counter() - t0, finish_reason=finish, model=self.model)

    # -- async plumbing
    def _async_parts(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._loop is not loop:
            # an async connection pool and a Semaphore belong to one event loop
            self._aclient = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.config.api_key or "EMPTY",
                                               timeout=self._timeout_cfg, max_retries=self.config.max_retries)
            self._sem = asyncio.Semaphore(self.config.max_concurrency)
            self._loop = loop
        assert self._sem is not None
        return self._aclient, self._sem

    def map_structured(self, requests: Sequence[tuple[Sequence[Message], Sequence[Image.Image]]],
                       response_model: type[T]) -> list[tuple[T, CompletionInfo] | LLMError]:
        """Run many structured requests concurrently; each result is a pair or the LLMError it raised."""
        async def run() -> list[tuple[T, CompletionInfo] | LLMError]:
            async def one(msgs: Sequence[Message], imgs: Sequence[Image.Image]) -> Any:
                try:
                    return await self.acomplete_structured(msgs, response_model, imgs)
                except LLMUnavailableError:
                    raise
                except LLMError as exc:
                    return exc
            try:
                return list(await asyncio.gather(*(one(m, i) for m, i in requests)))
            finally:
                await self.aclose()
        return asyncio.run(run())

    async def aclose(self) -> None:
        """Close the async connection pool."""
        if self._aclient is not None:
            await self._aclient.close()
            self._aclient, self._sem, self._loop = None, None, None

    def close(self) -> None:
        """Close the sync connection pool."""
        self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Attempts:
    """One structured request's attempts: the budget grows after a cut-off answer, tokens add up."""

    def __init__(self, client: LLMClient, response_model: type[BaseModel], max_tokens: int | None,
                 logprobs: bool = False) -> None:
        self.client = client
        self.response_model = response_model
        self.logprobs = logprobs
        self.budget = max_tokens or client.config.max_tokens
        self.attempt = 0
        self.tokens = [0, 0]
        self.t0 = time.perf_counter()

    def request(self, messages: Sequence[Message], images: Sequence[Image.Image]) -> dict[str, Any]:
        self.attempt += 1
        return self.client._request(messages, self.response_model, images, self.attempt, self.budget,
                                    logprobs=self.logprobs)

    def parse(self, answer: _Answer) -> tuple[Any, CompletionInfo]:
        text, finish, p_tok, c_tok, logprobs = answer
        self.tokens[0] += p_tok
        self.tokens[1] += c_tok
        try:
            instance, repaired = parse_structured(text, self.response_model)
        except LLMResponseError as exc:
            exc.finish_reason = finish
            raise
        return instance, CompletionInfo(raw_text=text, prompt_tokens=self.tokens[0], completion_tokens=self.tokens[1],
                                        seconds=time.perf_counter() - self.t0, attempts=self.attempt,
                                        repaired=repaired, finish_reason=finish, model=self.client.model,
                                        token_logprobs=logprobs)

    def failed(self, exc: LLMResponseError) -> None:
        """Re-raise when no attempt is left; else give a cut-off answer room to finish next time."""
        if self.attempt > self.client.config.max_retries:
            raise exc
        if exc.finish_reason == "length":
            self.budget *= 2


def value_probability(info: CompletionInfo, key: str, value: str) -> float | None:
    """The probability the model gave to ``value`` as the JSON string of ``key`` in its answer: the product of
    the probabilities of the tokens that spell it (a label's confidence). None without log-probabilities or
    when the value is not found in the answer as generated."""
    if not info.token_logprobs or not value:
        return None
    text = "".join(token for token, _ in info.token_logprobs)
    # The model wrote JSON: the value may stand escaped (\u00e9, \") or as is.
    spellings = dict.fromkeys((value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]))
    match = next((m for m in (re.search(rf'"{re.escape(key)}"\s*:\s*"({re.escape(s)})"', text) for s in spellings)
                  if m is not None), None)
    if match is None:
        return None
    start, end = match.span(1)
    total, position = 0.0, 0
    for token, logprob in info.token_logprobs:
        if position < end and position + len(token) > start:  # the token overlaps the value
            total += logprob
        position += len(token)
    return math.exp(total)
