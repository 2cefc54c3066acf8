"""The API with a model server: a real vLLM server on a tiny random model, and one that is gone."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.service.conftest import free_port
from tests.service.test_api import CAPTION, RIGHT, post_photo, sse_events
from vplink.agent.linker import Linker
from vplink.agent.llm_client import LLMClient, LLMConfig
from vplink.agent.settings import LinkerConfig
from vplink.service import create_app
from vplink.wiring import open_linker


def test_health_and_stream_with_a_real_model_server(service_settings, people_store: str, tiny_text_llm,
                                                    people_dir: Path) -> None:
    linker = open_linker(store=people_store, llm_config=tiny_text_llm, k=5, max_reflections=0,
                         describe_max_tokens=64, route_confidence=1.01)  # always ask the model
    with TestClient(create_app(service_settings, linker=linker)) as client:
        server = client.get("/health").json()["model_server"]
        assert server["configured"] and server["reachable"] and server["model"] == tiny_text_llm.model
        streamed = post_photo(client, people_dir / "images" / "two_people.jpg", url="/link/stream",
                              box=RIGHT, text=CAPTION)
    assert streamed.status_code == 200
    events = sse_events(streamed.text)
    describe = next(data["update"] for name, data in events if name == "step" and data["node"] == "describe")
    assert describe["used_model"] == tiny_text_llm.model  # the model was asked while the page waited
    assert events[-1][0] == "result" and events[-1][1]["used_model"] == tiny_text_llm.model


def test_health_says_when_the_model_server_is_gone(service_settings, service_linker: Linker) -> None:
    gone = LLMClient(LLMConfig(url=f"http://127.0.0.1:{free_port()}/v1", model="absent", timeout_s=5))
    linker = Linker(service_linker.retriever, llm=gone, config=LinkerConfig(k=5))
    with TestClient(create_app(service_settings, linker=linker)) as client:
        health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert health["model_server"]["reachable"] is False and "ConnectError" in health["model_server"]["error"]
    assert health["store"]["ok"]
