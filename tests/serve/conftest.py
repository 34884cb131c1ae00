"""Fixtures: tiny models served on 127.0.0.1 (a free port) in a background thread."""

import pytest

from tiny_serving import MODEL_ID, chatml_model


@pytest.fixture(scope="session")
def tiny():
    """A float64 tiny LLaMA over a byte vocabulary with ChatML specials (<|im_end|> ends a turn)."""
    return chatml_model(dtype="float64")


@pytest.fixture(scope="session", autouse=True)
def _no_proxy_for_localhost():
    """The clients talk to 127.0.0.1 only: keep any proxy settings of the environment out of the way."""
    import os

    old = os.environ.get("NO_PROXY")
    os.environ["NO_PROXY"] = "127.0.0.1,localhost" + ("," + old if old else "")
    yield
    if old is None:
        os.environ.pop("NO_PROXY", None)
    else:
        os.environ["NO_PROXY"] = old


@pytest.fixture(scope="session")
def server(tiny):
    from refimpl.serve import ServerThread

    with ServerThread(tiny, model_id=MODEL_ID, max_body_bytes=64 * 1024) as s:
        yield s


@pytest.fixture()
def client(server):
    import openai

    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
