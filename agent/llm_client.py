"""A client for an OpenAI-compatible (vLLM) server that returns pydantic objects via guided JSON decoding."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import httpx
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vplink.retrieval.errors import VplinkError

T = TypeVar("T", bound=BaseModel)
Message = dict[str, Any]

SERVE_HINT = "start one with `vplink llm serve` or pass --llm-url"


class LLMError(VplinkError):
    """Base class of the model client's errors."""


class LLMUnavailableError(LLMError):
    """No model server answers at the configured URL."""


class LLMTimeoutError(LLMError):
    """The model server did not answer within the timeout."""


class LLMHTTPError(LLMError):
    """The model server answered with an HTTP error; ``body`` holds its message."""

    def __init__(self, message: str, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(message)


class LLMRequestError(LLMError):
    """The request cannot be sent as asked (e.g. images to a text-only configuration)."""


class LLMResponseError(LLMError):
    """The model's answer could not be parsed or repaired into the schema; ``raw`` holds it."""

    def __init__(self, message: str, raw: str, finish_reason: str | None = None) -> None:
        self.raw = raw
        self.finish_reason = finish_reason
        super().__init__(f"{message}; raw answer: {raw[:500]!r}")


class LLMConfig(BaseModel):
    """Where the model server is and how to sample from it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="http://127.0.0.1:8801/v1", description="base URL; '/v1' is added when missing")
    model: str | None = Field(default=None, description="None: the first model the server lists")
    timeout_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=2, ge=0, description="extra attempts after a malformed or failed answer")
    temperature: float = Field(default=0.0, ge=0)
    max_tokens: int = Field(default=512, gt=0)
    vision: bool = False
    max_concurrency: int = Field(default=8, gt=0, description="requests in flight at once (async)")
    image_max_side: int | None = Field(default=1024, description="larger images are shrunk before sending")
    api_key: str | None = None
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request")

    def base_url(self) -> str:
        """The URL ending in ``/v1``."""
        url = self.url.rstrip("/")
        return url if url.endswith("/v1") else url + "/v1"


class CompletionInfo(BaseModel):
    """What one structured completion cost and how it went."""

    raw_text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    attempts: int = 1
    repaired: bool = False
    finish_reason: str | None = None
    model: str = ""


# ---------------------------------------------------------------- JSON repair

def _scan(text: str) -> tuple[list[str], bool, bool, list[tuple[int, list[str]]]]:
    """Bracket stack, in-string and pending-escape state at the end, and the safe cut points on the way."""
    stack: list[str] = []
    in_str = esc = False
    cuts: list[tuple[int, list[str]]] = []  # (cut position, open brackets there)
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            stack.append(ch)
            cuts.append((i + 1, list(stack)))
        elif ch in "}]":
            if stack:
                stack.pop()
            if not stack:
                return stack, False, False, [(i + 1, [])]
        elif ch == ",":
            cuts.append((i, list(stack)))
    return stack, in_str, esc, cuts


def _closers(stack: list[str]) -> str:
    return "".join("}" if b == "{" else "]" for b in reversed(stack))


def extract_json(text: str) -> tuple[Any, bool]:
    """Parse the first JSON object or array in ``text``; close it if truncated. Returns (value, repaired)."""
    stripped = text.strip()
    try:
        return json.loads(stripped), False
    except json.JSONDecodeError:
        pass
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if not starts:
        raise ValueError("no JSON object in the answer")
    body = stripped[min(starts):]
    try:
        value, _ = json.JSONDecoder().raw_decode(body)
        return value, True  # surrounding prose or code fences dropped
    except json.JSONDecodeError:
        pass
    stack, in_str, esc, cuts = _scan(body)
    # first try to keep everything: close the open string and brackets
    head = body[:-1] if esc else body
    candidates = [head + ('"' if in_str else "") + _closers(stack)]
    candidates.append(head.rstrip().rstrip(",") + ('"' if in_str else "") + _closers(stack))
    # then drop the last, incomplete member: cut at earlier commas / openers
    candidates += [body[:pos].rstrip() + _closers(open_) for pos, open_ in reversed(cuts)]
    for cand in candidates:
        try:
            return json.loads(cand), True
        except json.JSONDecodeError:
            continue
    raise ValueError("the answer holds no JSON object that can be closed")


def parse_structured(text: str, response_model: type[T]) -> tuple[T, bool]:
    """Validate ``text`` as ``response_model``, repairing truncated or wrapped JSON. Returns (instance, repaired)."""
    try:
        return response_model.model_validate_json(text), False
    except ValidationError:
        pass
    try:
        value, repaired = extract_json(text)
    except ValueError as exc:
        raise LLMResponseError(f"answer is not JSON for {response_model.__name__} ({exc})", text) from None
    try:
        return response_model.model_validate(value), repaired
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
    """Sends chat requests to a vLLM server; sync and async, with repair and bounded retries."""

    def __init__(self, config: LLMConfig | None = None) -> None:
        self.config = config or LLMConfig()
        self.base_url = self.config.base_url()
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        self._headers = headers
        self._client = httpx.Client(timeout=self.config.timeout_s, headers=headers)
        self._aclient: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._model: str | None = self.config.model

    # -- errors
    def _unavailable(self) -> LLMUnavailableError:
        return LLMUnavailableError(f"no model server at {self.base_url}; {SERVE_HINT}")

    def _timeout(self) -> LLMTimeoutError:
        return LLMTimeoutError(f"model server at {self.base_url} did not answer within {self.config.timeout_s:g} s; "
                               "raise LLMConfig.timeout_s or lower max_tokens/concurrency")

    def _http_error(self, resp: httpx.Response) -> LLMHTTPError:
        body = resp.text
        try:
            err = resp.json()
            body = (err.get("error") or {}).get("message") or err.get("message") or body \
                if isinstance(err, dict) else body
        except ValueError:
            pass
        return LLMHTTPError(f"model server at {self.base_url} answered HTTP {resp.status_code}: {body}",
                            resp.status_code, str(body))

    # -- discovery
    def models(self) -> list[str]:
        """The model names the server serves."""
        try:
            resp = self._client.get(f"{self.base_url}/models")
        except httpx.ConnectError:
            raise self._unavailable() from None
        except httpx.TimeoutException:
            raise self._timeout() from None
        if resp.status_code != 200:
            raise self._http_error(resp)
        return [m["id"] for m in resp.json().get("data", [])]

    def health(self) -> bool:
        """Whether the server answers and lists at least one model."""
        try:
            return bool(self.models())
        except LLMError:
            return False

    @property
    def model(self) -> str:
        """The model name requests use (auto-detected once when not configured)."""
        if self._model is None:
            names = self.models()
            if not names:
                raise LLMUnavailableError(f"the server at {self.base_url} lists no model; check its log")
            self._model = names[0]
        return self._model

    # -- request / response
    def _payload(self, messages: Sequence[Message], response_model: type[BaseModel] | None,
                 images: Sequence[Image.Image], attempt: int, max_tokens: int | None) -> dict[str, Any]:
        if images and not self.config.vision:
            raise LLMRequestError(f"{len(images)} image(s) given but LLMConfig.vision is False; "
                                  "set vision=True for a vision-language server or send no images")
        msgs = _with_images(messages, images, self.config.image_max_side) if images else [dict(m) for m in messages]
        # a retry at temperature 0 would repeat the same answer: add a little noise
        temp = self.config.temperature if attempt == 1 else max(self.config.temperature, 0.3)
        payload: dict[str, Any] = {"model": self.model, "messages": msgs, "temperature": temp,
                                   "max_tokens": max_tokens or self.config.max_tokens}
        if response_model is not None:
            payload["response_format"] = response_format(response_model)
        payload.update(self.config.extra_body)
        return payload

    @staticmethod
    def _read(data: dict[str, Any]) -> tuple[str, str | None, int, int]:
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = data.get("usage") or {}
        return text, choice.get("finish_reason"), int(usage.get("prompt_tokens") or 0), \
            int(usage.get("completion_tokens") or 0)

    def _outcome(self, data: dict[str, Any], response_model: type[T], attempt: int, t0: float,
                 tokens: list[int]) -> tuple[T, CompletionInfo]:
        text, finish, p_tok, c_tok = self._read(data)
        tokens[0] += p_tok
        tokens[1] += c_tok
        try:
            instance, repaired = parse_structured(text, response_model)
        except LLMResponseError as exc:
            exc.finish_reason = finish
            raise
        return instance, CompletionInfo(raw_text=text, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                                        seconds=time.perf_counter() - t0, attempts=attempt, repaired=repaired,
                                        finish_reason=finish, model=self.model)

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._client.post(f"{self.base_url}/chat/completions", json=payload)
        except httpx.ConnectError:
            raise self._unavailable() from None
        except httpx.TimeoutException:
            raise self._timeout() from None
        if resp.status_code != 200:
            raise self._http_error(resp)
        return resp.json()

    def complete_structured(self, messages: Sequence[Message], response_model: type[T],
                            images: Sequence[Image.Image] = (), max_tokens: int | None = None
                            ) -> tuple[T, CompletionInfo]:
        """Ask for an answer under ``response_model``'s JSON schema; return the instance and its cost."""
        t0, tokens, last_err = time.perf_counter(), [0, 0], None
        budget = max_tokens or self.config.max_tokens
        for attempt in range(1, self.config.max_retries + 2):
            try:
                data = self._post(self._payload(messages, response_model, images, attempt, budget))
                return self._outcome(data, response_model, attempt, t0, tokens)
            except LLMResponseError as exc:  # a timeout is not retried: it would likely repeat
                last_err = exc
                budget = self._next_budget(exc, budget)
            except LLMHTTPError as exc:
                if exc.status < 500:
                    raise
                last_err = exc
        assert last_err is not None
        raise last_err

    def complete_text(self, messages: Sequence[Message], max_tokens: int | None = None,
                      images: Sequence[Image.Image] = (), **extra: Any) -> tuple[str, CompletionInfo]:
        """A free-text completion (no schema); ``extra`` is merged into the request (e.g. ``ignore_eos``)."""
        t0 = time.perf_counter()
        payload = self._payload(messages, None, images, 1, max_tokens) | extra
        text, finish, p_tok, c_tok = self._read(self._post(payload))
        return text, CompletionInfo(raw_text=text, prompt_tokens=p_tok, completion_tokens=c_tok,
                                    seconds=time.perf_counter() - t0, finish_reason=finish, model=self.model)

    @staticmethod
    def _next_budget(exc: LLMError, budget: int) -> int:
        # a cut-off answer gets room to finish on the next try; other failures keep the budget
        truncated = isinstance(exc, LLMResponseError) and exc.finish_reason == "length"
        return budget * 2 if truncated else budget

    # -- async
    def _async_parts(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._loop is not loop:
            # an AsyncClient and a Semaphore belong to one event loop
            limits = httpx.Limits(max_connections=self.config.max_concurrency)
            self._aclient = httpx.AsyncClient(timeout=self.config.timeout_s, headers=self._headers, limits=limits)
            self._sem = asyncio.Semaphore(self.config.max_concurrency)
            self._loop = loop
        assert self._sem is not None
        return self._aclient, self._sem

    async def _apost(self, payload: dict[str, Any]) -> dict[str, Any]:
        client, sem = self._async_parts()
        async with sem:
            try:
                resp = await client.post(f"{self.base_url}/chat/completions", json=payload)
            except httpx.ConnectError:
                raise self._unavailable() from None
            except httpx.TimeoutException:
                raise self._timeout() from None
        if resp.status_code != 200:
            raise self._http_error(resp)
        return resp.json()

    async def acomplete_structured(self, messages: Sequence[Message], response_model: type[T],
                                   images: Sequence[Image.Image] = (), max_tokens: int | None = None
                                   ) -> tuple[T, CompletionInfo]:
        """Async twin of :meth:`complete_structured`; at most ``max_concurrency`` run at once."""
        t0, tokens, last_err = time.perf_counter(), [0, 0], None
        budget = max_tokens or self.config.max_tokens
        _ = self.model  # resolve the model name once, before the requests fan out
        for attempt in range(1, self.config.max_retries + 2):
            try:
                data = await self._apost(self._payload(messages, response_model, images, attempt, budget))
                return self._outcome(data, response_model, attempt, t0, tokens)
            except LLMResponseError as exc:  # a timeout is not retried: it would likely repeat
                last_err = exc
                budget = self._next_budget(exc, budget)
            except LLMHTTPError as exc:
                if exc.status < 500:
                    raise
                last_err = exc
        assert last_err is not None
        raise last_err

    async def acomplete_text(self, messages: Sequence[Message], max_tokens: int | None = None,
                             images: Sequence[Image.Image] = (), **extra: Any) -> tuple[str, CompletionInfo]:
        """Async twin of :meth:`complete_text`."""
        t0 = time.perf_counter()
        _ = self.model
        payload = self._payload(messages, None, images, 1, max_tokens) | extra
        text, finish, p_tok, c_tok = self._read(await self._apost(payload))
        return text, CompletionInfo(raw_text=text, prompt_tokens=p_tok, completion_tokens=c_tok,
                                    seconds=time.perf_counter() - t0, finish_reason=finish, model=self.model)

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
            await self._aclient.aclose()
            self._aclient, self._sem, self._loop = None, None, None

    def close(self) -> None:
        """Close the sync connection pool."""
        self._client.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
