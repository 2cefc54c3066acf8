"""The model client against real vLLM servers of tiny random models (no mocks)."""

from __future__ import annotations

import asyncio
import math
from typing import Literal

import pytest
from PIL import Image
from pydantic import BaseModel

from tests.stub_servers import chat_completion, html_server, scripted_server, silent_server
from vplink.agent.llm_client import CompletionInfo, LLMClient, LLMConfig, parse_structured, value_probability
from vplink.agent.llm_errors import (LLMConfigError, LLMHTTPError, LLMProtocolError, LLMRequestError, LLMResponseError,
                                     LLMTimeoutError, LLMUnavailableError)
from vplink.core.errors import VplinkError
from vplink.model_server.llm_server import free_port


class Verdict(BaseModel):
    """A small closed schema a random model can finish within a few tokens."""

    kind: Literal["person", "place", "thing"]
    sure: bool


class Note(BaseModel):
    """An open schema whose string fields a random model fills until it is cut off."""

    title: str = ""
    body: str = ""
    tags: list[str] = []


MSG = [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "What is in the box?"}]


# ---------------------------------------------------------------- pure parsing (no server)

@pytest.mark.parametrize("text, expected", [
    ('{"title": "a", "body": "hel', Note(title="a", body="hel")),
    ('Sure! ```json\n{"title": "x"}\n``` done', Note(title="x")),
    ('{"title": "a", "tags": ["p", "q', Note(title="a", tags=["p", "q"])),
    ('{"title": "a", "body": tr', Note(title="a", body="tr")),
    ('{"title": "a", "body"', Note(title="a")),
])
def test_answers_cut_short_or_wrapped_in_prose_are_repaired(text: str, expected: Note) -> None:
    value, repaired = parse_structured(text, Note)
    assert value == expected and repaired
    assert parse_structured(expected.model_dump_json(), Note) == (expected, False)  # whole JSON: no repair


def test_parse_structured_reports_unfixable_answers_with_raw_text() -> None:
    with pytest.raises(LLMResponseError) as err:
        parse_structured("I cannot answer that.", Verdict)
    assert err.value.raw == "I cannot answer that." and isinstance(err.value, VplinkError)
    with pytest.raises(LLMResponseError, match="kind"):
        parse_structured('{"kind": "animal", "sure": true}', Verdict)


def test_closed_port_gives_unavailable_error() -> None:
    client = LLMClient(LLMConfig(url=f"http://127.0.0.1:{free_port()}", model="m", max_retries=0))
    with pytest.raises(LLMUnavailableError, match="vplink llm serve"):
        client.complete_structured(MSG, Verdict)
    assert client.health() is False
    with pytest.raises(LLMUnavailableError):
        asyncio.run(client.acomplete_structured(MSG, Verdict))


def test_url_without_v1_is_completed() -> None:
    assert LLMConfig(url="http://h:1/").base_url() == "http://h:1/v1"
    assert LLMConfig(url="http://h:1/v1").base_url() == "http://h:1/v1"


def _finishes(fn, limit_s: float = 60.0):
    """Run ``fn`` in a thread; return what it raised. A call still running after ``limit_s`` is a hang."""
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 -- handed to the test
            outcome.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit_s)
    assert outcome, f"still waiting after {limit_s:g} s: the client hangs"
    return outcome[0]


def test_server_that_never_answers_fails_the_health_check_with_the_url() -> None:
    with silent_server() as url:
        client = LLMClient(LLMConfig(url=url, health_timeout_s=0.5))
        error = _finishes(client.check)
        assert isinstance(error, LLMTimeoutError), error
        assert url in str(error) and "did not answer within 0.5 s" in str(error) and "vplink llm serve" in str(error)
        assert client.health() is False


def test_request_to_a_server_that_never_answers_ends_at_the_timeout() -> None:
    with silent_server() as url:
        client = LLMClient(LLMConfig(url=url, model="m", timeout_s=0.5, max_retries=0))
        assert isinstance(_finishes(lambda: client.complete_structured(MSG, Verdict)), LLMTimeoutError)
        error = _finishes(lambda: asyncio.run(client.acomplete_structured(MSG, Verdict)))
        assert isinstance(error, LLMTimeoutError) and url in str(error)


def test_not_a_url_is_a_clear_config_error() -> None:
    with pytest.raises(LLMConfigError, match=r"'notaurl' is not an http\(s\) URL.*Fix: pass --llm-url"):
        LLMClient(LLMConfig(url="notaurl"))
    for bad in ("ftp://h/v1", "http://", "http://h:notaport/v1"):
        with pytest.raises(LLMConfigError):
            LLMClient(LLMConfig(url=bad))


def test_web_page_instead_of_the_api_is_named_in_one_line() -> None:
    with html_server(200) as url:
        client = LLMClient(LLMConfig(url=url, model="m", max_retries=0))
        with pytest.raises(LLMProtocolError) as err:
            client.check()
        text = str(err.value)
        assert url in text and "'Welcome to nginx!'" in text and "Fix:" in text
        assert "\n" not in text and "<" not in text and len(text) < 300
        with pytest.raises(LLMProtocolError):
            client.complete_structured(MSG, Verdict)


def test_404_web_page_is_summarised_not_printed() -> None:
    with html_server(404) as url:
        client = LLMClient(LLMConfig(url=url, model="m", max_retries=0))
        with pytest.raises(LLMHTTPError) as err:
            client.complete_structured(MSG, Verdict)
        text = str(err.value)
        assert err.value.status == 404 and "ending in /v1" in text
        assert "filler paragraph" not in text and "\n" not in text and len(text) < 300


def test_rate_limit_and_server_errors_are_retried_with_backoff() -> None:
    answers = [(429, '{"error": {"message": "slow down"}}'), (503, '{"error": {"message": "busy"}}'),
               (200, chat_completion('{"kind": "place", "sure": true}'))]
    with scripted_server(answers) as (url, asked):
        client = LLMClient(LLMConfig(url=url, model="m", max_retries=2))
        verdict, info = client.complete_structured(MSG, Verdict)
        assert verdict == Verdict(kind="place", sure=True) and info.attempts == 1
        assert asked == ["/v1/chat/completions"] * 3
    with scripted_server([(503, '{"error": {"message": "busy"}}')]) as (url, asked):
        client = LLMClient(LLMConfig(url=url, model="m", max_retries=1))
        with pytest.raises(LLMHTTPError, match="HTTP 503: busy"):
            asyncio.run(client.acomplete_structured(MSG, Verdict))
        assert len(asked) == 2  # one try and one retry


def test_check_refuses_a_model_the_server_does_not_serve() -> None:
    models = '{"object": "list", "data": [{"id": "tiny-text", "object": "model"}]}'
    with scripted_server([(200, models)]) as (url, _):
        assert LLMClient(LLMConfig(url=url)).check() == "tiny-text"
        with pytest.raises(LLMConfigError, match="--llm-model with one of: tiny-text"):
            LLMClient(LLMConfig(url=url, model="other")).check()


# ---------------------------------------------------------------- the tiny text server

def test_guided_decoding_yields_schema_instance(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm)
    verdict, info = client.complete_structured(MSG, Verdict)
    assert isinstance(verdict, Verdict)
    assert info.finish_reason == "stop" and not info.repaired and info.attempts == 1
    # compact JSON: the server was started without free whitespace in guided JSON
    assert info.raw_text.startswith('{"kind":"')
    assert info.prompt_tokens > 5 and info.completion_tokens > 3 and info.seconds > 0


def test_token_logprobs_give_the_probability_of_a_chosen_value(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm)
    verdict, info = client.complete_structured(MSG, Verdict, logprobs=True)
    # the tokens spell the answer (then, here, the stop token)
    assert info.token_logprobs and "".join(t for t, _ in info.token_logprobs).startswith(info.raw_text)
    assert all(lp <= 0 for _, lp in info.token_logprobs)
    p = value_probability(info, "kind", verdict.kind)
    assert p is not None and 0 < p <= 1
    assert value_probability(info, "kind", "not-the-answer") is None
    _, plain = client.complete_structured(MSG, Verdict)
    assert plain.token_logprobs is None and value_probability(plain, "kind", verdict.kind) is None


def test_value_probability_multiplies_the_tokens_that_spell_the_value() -> None:
    tokens = [('{"', -0.1), ("kind", -0.2), ('":"', -0.3), ("per", -0.5), ("son", -0.25), ('","', -0.4),
              ("sure", 0.0), ('":', 0.0), ("true", -1.0), ("}", 0.0)]
    info = CompletionInfo(raw_text="".join(t for t, _ in tokens), token_logprobs=tokens)
    assert value_probability(info, "kind", "person") == pytest.approx(math.exp(-0.75))
    escaped = [('{"', 0.0), ("name", 0.0), ('":"', 0.0), ("Jos", -0.5), ("\\u00e9", -0.5), ('"}', 0.0)]
    info = CompletionInfo(raw_text="".join(t for t, _ in escaped), token_logprobs=escaped)
    assert value_probability(info, "name", "José") == pytest.approx(math.exp(-1.0))


def test_model_is_auto_detected(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"model": None}))
    assert client.models() == ["tiny-text"]
    assert client.model == "tiny-text" and client.health()


def test_truncated_answer_is_repaired(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"max_retries": 0}))
    note, info = client.complete_structured(MSG, Note, max_tokens=12)
    assert info.finish_reason == "length", "setup: 12 tokens must cut the random model's answer"
    assert info.repaired and isinstance(note, Note)
    assert info.completion_tokens == 12


def test_truncated_answer_that_cannot_be_closed_raises_response_error(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"max_retries": 0}))
    # two tokens: at most '{"' -- no field of the required schema can be recovered
    with pytest.raises(LLMResponseError) as err:
        client.complete_structured(MSG, Verdict, max_tokens=2)
    assert err.value.raw.startswith("{") and err.value.finish_reason == "length"


def test_retry_gets_a_larger_budget_after_truncation(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"max_retries": 4}))
    verdict, info = client.complete_structured(MSG, Verdict, max_tokens=2)
    assert isinstance(verdict, Verdict) and info.attempts > 1


def test_unknown_model_gives_http_error_with_vllm_message(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"model": "no-such-model"}))
    with pytest.raises(LLMHTTPError) as err:
        client.complete_structured(MSG, Verdict)
    assert err.value.status == 404 and "no-such-model" in str(err.value)


def test_tiny_timeout_gives_timeout_error(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"timeout_s": 0.001, "max_retries": 0}))
    # A long answer that cannot end early: a structured answer may close its JSON after a few tokens, and an
    # answer already waiting in the socket when the client reads it beats any timeout (failed CI that way).
    # ignore_eos makes the server generate all 2,048 tokens, far longer than the 1 ms read timeout.
    with pytest.raises(LLMTimeoutError, match="timeout_s"):
        client.complete_text(MSG, max_tokens=2048, ignore_eos=True)


def test_vllm_sampling_fields_reach_the_server(tiny_text_llm: LLMConfig) -> None:
    # ignore_eos is vLLM's own field (sent as extra_body): the answer runs to the full budget
    client = LLMClient(tiny_text_llm)
    text, info = client.complete_text(MSG, max_tokens=24, ignore_eos=True)
    assert info.completion_tokens == 24 and info.finish_reason == "length" and text
    _, ainfo = asyncio.run(client.acomplete_text(MSG, max_tokens=12, ignore_eos=True))
    assert ainfo.completion_tokens == 12


def test_llm_bench_writes_throughput_rows(tiny_text_llm: LLMConfig, tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from vplink.cli import app

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["llm", "bench", "--url", tiny_text_llm.url, "--max-tokens", "8",
                                      "--concurrency", "1", "--concurrency", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["model"] == "tiny-text" and "avx512_vnni" in report["provenance"]["cpu"]["simd"]
    assert [(r["concurrency"], r["completion_tokens"]) for r in report["rows"]] == [(1, 8), (2, 16)]


def test_images_need_vision_flag(tiny_text_llm: LLMConfig) -> None:
    with pytest.raises(LLMRequestError, match="vision"):
        LLMClient(tiny_text_llm).complete_structured(MSG, Verdict, images=[Image.new("RGB", (8, 8))])


def test_text_only_server_rejects_image_parts(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"vision": True}))
    with pytest.raises(LLMHTTPError) as err:
        client.complete_structured(MSG, Verdict, images=[Image.new("RGB", (32, 32), "red")])
    assert err.value.status == 400 and err.value.body


def test_async_requests_run_concurrently(tiny_text_llm: LLMConfig) -> None:
    client = LLMClient(tiny_text_llm.model_copy(update={"max_concurrency": 4}))

    async def run() -> list:
        try:
            return await asyncio.gather(*(client.acomplete_structured(
                [{"role": "user", "content": f"question {i}"}], Verdict) for i in range(6)))
        finally:
            await client.aclose()
    results = asyncio.run(run())
    assert len(results) == 6 and all(isinstance(v, Verdict) for v, _ in results)
    # a second event loop must work too (the async pool is rebuilt per loop)
    mapped = client.map_structured([(MSG, ())] * 3, Verdict)
    assert all(isinstance(r, tuple) and isinstance(r[0], Verdict) for r in mapped)


# ---------------------------------------------------------------- the tiny vision-language server

def test_vlm_receives_image_parts(tiny_vlm_llm: LLMConfig) -> None:
    client = LLMClient(tiny_vlm_llm)
    _, text_only = client.complete_structured(MSG, Verdict)
    image = Image.new("RGB", (120, 90), (200, 30, 30))
    verdict, with_image = client.complete_structured(MSG, Verdict, images=[image])
    assert isinstance(verdict, Verdict)
    # the image is expanded into image tokens inside the prompt
    assert with_image.prompt_tokens > text_only.prompt_tokens
    _, two = client.complete_structured(MSG, Verdict, images=[image, image.rotate(90)])
    assert two.prompt_tokens - with_image.prompt_tokens == with_image.prompt_tokens - text_only.prompt_tokens


@pytest.mark.slow
def test_real_default_model_answers_in_schema() -> None:
    """The real 1.5B model behind $VPLINK_LLM_URL (default 127.0.0.1:8801) returns a sensible entity."""

    class Entity(BaseModel):
        entity_type: Literal["person", "organization", "place", "other"]
        names: list[str]
        confidence: float

    client = LLMClient(LLMConfig(max_tokens=96, timeout_s=600))  # the URL: $VPLINK_LLM_URL or the default
    url = client.base_url
    if not client.health():
        pytest.fail(f"no model server at {url}; start one with `vplink llm serve` or set VPLINK_LLM_URL")
    entity, info = client.complete_structured(
        [{"role": "system", "content": "You identify entities. Answer in JSON."},
         {"role": "user", "content": "Who was the 44th president of the United States?"}], Entity)
    assert entity.entity_type == "person"
    assert any("obama" in n.lower() for n in entity.names), info.raw_text
