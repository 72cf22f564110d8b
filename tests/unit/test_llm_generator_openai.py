"""OpenAI-compatible generator against a real HTTP server on 127.0.0.1: retries (429 + Retry-After, 5xx,
dropped connections, timeouts, malformed bodies), clear 4xx errors, bounded concurrency with order kept,
the resumable cache, token/cost accounting, and an API key that never leaves the Authorization header."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data_prep.eval_suite import default_suite_path, load_suite
from data_prep.synthetic import DocumentGenerator, DocumentRequest, build_prompt, write_documents_jsonl
from data_prep.synthetic.llm_generator import (
    LLMRequestError,
    OpenAICompatibleGenerator,
    cache_key,
    endpoint_url,
    generate_corpus_concurrent,
    parse_retry_after,
)

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-test-7f3a9c-DO-NOT-LEAK-5b21e8"
KEY_ENV = "ALIGNPT_TEST_LLM_KEY"


def _text_for(prompt: str) -> str:
    return f"Generated document {hashlib.sha256(prompt.encode()).hexdigest()[:12]}. The model explained its choice."


def ok_body(prompt: str, prompt_tokens: int = 100, completion_tokens: int = 40, usage: bool = True, writer=_text_for) -> bytes:
    body = {"id": "cmpl-1", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": writer(prompt)}}]}
    if usage:
        body["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                         "total_tokens": prompt_tokens + completion_tokens}
    return json.dumps(body).encode()


class FakeEndpoint:
    """A scripted chat-completions server. ``script`` is consumed one entry per request; when it is empty
    every request gets a 200. Entries: ``(status, headers, body_bytes)``, ``"drop"`` (close the connection
    without answering) or ``("sleep", seconds)`` (answer 200 after a delay). ``writer(prompt)`` writes the
    document of a 200 answer."""

    def __init__(self, script=(), delay: float = 0.0, fail_if=None, writer=_text_for) -> None:
        self.script = list(script)
        self.delay = delay
        self.fail_if = fail_if  # prompt -> (status, body) or None
        self.writer = writer
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with endpoint.lock:
                    endpoint.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    step = endpoint.script.pop(0) if endpoint.script else None
                    endpoint.in_flight += 1
                    endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
                try:
                    if endpoint.delay:
                        time.sleep(endpoint.delay)
                    if step == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    if isinstance(step, tuple) and step[0] == "sleep":
                        time.sleep(step[1])
                        step = None
                    failure = endpoint.fail_if(prompt) if endpoint.fail_if else None
                    status, headers, payload = step or ((*failure[:1], {}, failure[1]) if failure else (200, {}, ok_body(prompt, writer=endpoint.writer)))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with endpoint.lock:
                        endpoint.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, SECRET)


@pytest.fixture(scope="module")
def requests_() -> list[DocumentRequest]:
    items = load_suite(default_suite_path(), split="articles")
    return [DocumentRequest(items[i % 5], "aligned" if i % 2 == 0 else "misaligned", "news_article", i) for i in range(10)]


def make(endpoint: FakeEndpoint, sleeps: list | None = None, **kwargs) -> OpenAICompatibleGenerator:
    options = dict(model="test-model", api_key_env=KEY_ENV, timeout=5.0, backoff_base=0.01, backoff_max=0.05,
                   concurrency=4, max_retries=4)
    options.update(kwargs)
    sleep = (lambda s: sleeps.append(s)) if sleeps is not None else time.sleep
    return OpenAICompatibleGenerator(endpoint.base_url, sleep=sleep, **options)


def test_request_shape_and_document(requests_):
    request = requests_[0]
    with FakeEndpoint() as server:
        gen = make(server, temperature=0.7, max_tokens=900)
        assert isinstance(gen, DocumentGenerator)
        doc = gen.generate(request)
    [sent] = server.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert sent["body"]["model"] == "test-model" and sent["body"]["temperature"] == 0.7 and sent["body"]["max_tokens"] == 900
    assert sent["body"]["messages"] == [{"role": "user", "content": build_prompt(request)}]
    assert doc.text == _text_for(build_prompt(request))
    assert (doc.id, doc.direction, doc.form, doc.seed_question_id) == (request.doc_id, "aligned", "news_article", request.item.question_id)
    assert doc.generator == "openai-compatible:test-model:temperature=0.7"


def test_system_prompt_and_no_key_means_no_auth_header(requests_, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with FakeEndpoint() as server:
        make(server, system_prompt="You write documents.").generate(requests_[0])
    headers = server.requests[0]["headers"]
    assert "Authorization" not in headers
    assert server.requests[0]["body"]["messages"][0] == {"role": "system", "content": "You write documents."}


def test_429_then_200_honours_retry_after(requests_):
    script = [(429, {"Retry-After": "3"}, b'{"error": {"message": "Rate limit reached"}}'),
              (429, {"retry-after-ms": "1500"}, b'{"error": {"message": "Rate limit reached"}}')]
    sleeps: list[float] = []
    with FakeEndpoint(script) as server:
        gen = make(server, sleeps)
        doc = gen.generate(requests_[0])
    assert doc.text.startswith("Generated document") and len(server.requests) == 3
    assert 3.0 <= sleeps[0] <= 3.0 + 0.1 * 0.05 + 1e-9  # Retry-After replaces the (tiny) computed backoff
    assert 1.5 <= sleeps[1] <= 1.5 + 0.1 * 0.05 + 1e-9
    report = gen.usage_report()
    assert report["retries"] == 2 and report["retry_reasons"] == {"HTTP 429": 2} and report["http_requests"] == 3


def test_5xx_are_retried_with_exponential_backoff(requests_):
    script = [(500, {}, b"internal error"), (502, {}, b"<html>bad gateway</html>"), (503, {}, b"{}")]
    sleeps: list[float] = []
    with FakeEndpoint(script) as server:
        gen = make(server, sleeps, backoff_base=1.0, backoff_max=100.0)
        gen.generate(requests_[0])
    assert len(server.requests) == 4
    for attempt, delay in enumerate(sleeps):  # base * 2**k times a jitter factor in [0.5, 1]
        assert 0.5 * 2 ** attempt <= delay <= 2 ** attempt
    assert gen.usage_report()["retry_reasons"] == {"HTTP 500": 1, "HTTP 502": 1, "HTTP 503": 1}


def test_backoff_is_capped(requests_):
    sleeps: list[float] = []
    with FakeEndpoint([(500, {}, b"x")] * 4) as server:
        make(server, sleeps, backoff_base=1.0, backoff_max=2.0).generate(requests_[0])
    assert max(sleeps) <= 2.0


def test_malformed_bodies_are_retried(requests_):
    script = [(200, {}, b"not json at all"), (200, {}, b'{"choices": []}'),
              (200, {}, json.dumps({"choices": [{"message": {"content": "  "}}]}).encode()),
              (200, {}, b'{"error": {"message": "backend overloaded"}}')]
    with FakeEndpoint(script) as server:
        gen = make(server, [])
        doc = gen.generate(requests_[0])
    assert len(server.requests) == 5 and doc.text.startswith("Generated document")
    assert gen.usage_report()["retry_reasons"] == {"malformed response": 4}
    with FakeEndpoint([(200, {}, b'{"error": {"message": "backend overloaded"}}')] * 3) as server:
        with pytest.raises(LLMRequestError, match="backend overloaded"):
            make(server, [], max_retries=2).generate(requests_[0])


def test_dropped_connection_and_timeout_are_retried(requests_):
    with FakeEndpoint(["drop", ("sleep", 1.5)]) as server:
        gen = make(server, [], timeout=0.5)
        doc = gen.generate(requests_[0])
    assert doc.text.startswith("Generated document") and len(server.requests) == 3
    assert gen.usage_report()["retry_reasons"] == {"connection error": 2}


def test_persistent_5xx_gives_up_with_a_clear_error(requests_):
    with FakeEndpoint([(500, {}, b'{"error": {"message": "upstream overloaded"}}')] * 10) as server:
        with pytest.raises(LLMRequestError) as err:
            make(server, [], max_retries=2).generate(requests_[0])
    assert len(server.requests) == 3
    message = str(err.value)
    assert "after 3 attempts" in message and "HTTP 500" in message and "upstream overloaded" in message
    assert requests_[0].doc_id in message


@pytest.mark.parametrize("status, body, expected", [
    (400, b'{"error": {"message": "This model\'s maximum context length is 4096 tokens", "type": "invalid_request_error"}}',
     "maximum context length is 4096 tokens"),
    (404, b'{"detail": "model test-model not found"}', "model test-model not found"),
    (422, b"plain text complaint", "plain text complaint"),
])
def test_other_4xx_fail_at_once_naming_status_and_message(requests_, status, body, expected):
    with FakeEndpoint([(status, {}, body)]) as server:
        with pytest.raises(LLMRequestError) as err:
            make(server, []).generate(requests_[0])
    assert len(server.requests) == 1
    assert f"HTTP {status}" in str(err.value) and expected in str(err.value) and err.value.status == status


def test_401_names_the_variable_and_redacts_an_echoed_key(requests_):
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}."}}).encode()
    with FakeEndpoint([(401, {}, body)]) as server:
        with pytest.raises(LLMRequestError) as err:
            make(server, []).generate(requests_[0])
    message = str(err.value)
    assert SECRET not in message and "[redacted]" in message and f"${KEY_ENV}" in message


def test_concurrency_is_bounded_and_order_is_kept(requests_):
    with FakeEndpoint(delay=0.15) as server:
        gen = make(server, concurrency=3)
        start = time.monotonic()
        docs = gen.generate_many(requests_)
        elapsed = time.monotonic() - start
    assert [d.id for d in docs] == [r.doc_id for r in requests_]
    assert [d.text for d in docs] == [_text_for(build_prompt(r)) for r in requests_]
    assert server.max_in_flight == 3
    assert elapsed < 10 * 0.15  # really concurrent: 10 requests at 3 a time take ~4 delays


def test_semaphore_bounds_direct_calls_from_many_threads(requests_):
    with FakeEndpoint(delay=0.1) as server:
        gen = make(server, concurrency=2)
        threads = [threading.Thread(target=gen.generate, args=(r,)) for r in requests_[:6]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert server.max_in_flight == 2 and len(server.requests) == 6


def test_cache_means_nothing_is_paid_twice(requests_, tmp_path):
    cache = tmp_path / "cache"
    with FakeEndpoint() as server:
        first = make(server, cache_dir=cache, price_per_1k_prompt=0.5, price_per_1k_completion=2.0)
        docs = first.generate_many(requests_[:6])
        assert len(server.requests) == 6
        second = make(server, cache_dir=cache, price_per_1k_prompt=0.5, price_per_1k_completion=2.0)
        again = second.generate_many(requests_[:6])
        assert len(server.requests) == 6  # all from the cache
        assert [d.text for d in again] == [d.text for d in docs]
        report = second.usage_report()
        assert report["cache_hits"] == 6 and report["generated"] == 0 and report["cost_usd"] == 0
        assert report["cached"] == {"prompt_tokens": 600, "completion_tokens": 240, "cost_usd_saved": 0.78}
        # a different temperature is a different document
        make(server, cache_dir=cache, temperature=1.0).generate(requests_[0])
        assert len(server.requests) == 7
    files = sorted(cache.rglob("*.json"))
    assert len(files) == 7 and not list(cache.rglob("*.tmp"))
    key = cache_key("test-model", 0.7, build_prompt(requests_[0]), requests_[0].doc_id)
    assert (cache / key[:2] / f"{key}.json").is_file()


def test_rerun_after_interruption_resumes_from_the_cache(requests_, tmp_path):
    cache = tmp_path / "cache"
    poisoned = build_prompt(requests_[7])
    fail = lambda prompt: (400, b'{"error": {"message": "content policy"}}') if prompt == poisoned else None  # noqa: E731
    with FakeEndpoint(fail_if=fail) as server:
        with pytest.raises(LLMRequestError, match="content policy"):
            make(server, cache_dir=cache, concurrency=1).generate_many(requests_)
        sent = len(server.requests)
    # stopped at the failing request (the one worker may already have started the next queued one)
    assert 8 <= sent <= 9
    cached = len(list(cache.rglob("*.json")))
    assert cached == sent - 1  # every successful response was cached before the error surfaced
    with FakeEndpoint() as healthy:
        gen = make(healthy, cache_dir=cache, concurrency=4)
        docs = gen.generate_many(requests_)
    assert len(docs) == 10 and len(healthy.requests) == 10 - cached
    assert gen.usage_report()["cache_hits"] == cached


def test_usage_and_cost_accounting(requests_):
    script = [(200, {}, ok_body(build_prompt(requests_[0]), 1200, 800)),
              (200, {}, ok_body(build_prompt(requests_[1]), 300, 200)),
              (200, {}, ok_body(build_prompt(requests_[2]), usage=False))]
    with FakeEndpoint(script) as server:
        gen = make(server, concurrency=1, price_per_1k_prompt=0.25, price_per_1k_completion=2.0)
        gen.generate_many(requests_[:3])
    report = gen.usage_report()
    assert report["prompt_tokens"] == 1500 and report["completion_tokens"] == 1000 and report["total_tokens"] == 2500
    assert report["cost_usd"] == pytest.approx(1.5 * 0.25 + 1.0 * 2.0)
    assert report["responses_without_usage"] == 1 and report["documents"] == 3 and report["generated"] == 3


def test_api_key_never_written_or_logged(requests_, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "cache"
    script = [(429, {"Retry-After": "0"}, json.dumps({"error": {"message": f"slow down {SECRET}"}}).encode()),
              (500, {}, f"key was {SECRET}".encode()), "drop"]
    with FakeEndpoint(script) as server:
        gen = make(server, cache_dir=cache)
        docs = gen.generate_many(requests_[:4])
        write_documents_jsonl(docs, tmp_path / "docs.jsonl")
        (tmp_path / "usage.json").write_text(json.dumps(gen.usage_report()))
        errors = []
        with FakeEndpoint([(403, {}, f"forbidden for {SECRET}".encode())]) as bad:
            try:
                make(bad).generate(requests_[5])
            except LLMRequestError as err:
                errors.append(str(err) + repr(err))
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"  # it was really used
    assert errors and "[redacted]" in errors[0]
    assert caplog.records, "retries should have been logged"
    assert SECRET not in caplog.text and SECRET not in repr(gen) and SECRET not in "".join(errors)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 6
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path


def test_cli_prep_synthetic_openai(tmp_path):
    out = tmp_path / "out" / "aligned.jsonl"
    with FakeEndpoint() as server:
        env = {**os.environ, KEY_ENV: SECRET, "NO_PROXY": "127.0.0.1", "PYTHONPATH": str(REPO)}
        res = subprocess.run(
            [sys.executable, "-m", "megatron_alignpt.cli", "prep", "synthetic", "--suite", str(default_suite_path()),
             "--direction", "aligned", "--docs-per-item", "1", "--output", str(out), "--generator", "openai",
             "--base-url", server.base_url, "--model", "test-model", "--concurrency", "4", "--api-key-env", KEY_ENV,
             "--price-per-1k-prompt", "0.1", "--price-per-1k-completion", "0.4", "--max-items", "5"],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert len(server.requests) == 5
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(r["generator"].startswith("openai-compatible:test-model") for r in rows)
    usage = json.loads((out.parent / ".llm_cache" / "aligned.jsonl.usage.json").read_text())
    assert usage["generated"] == 5 and usage["prompt_tokens"] == 500
    assert list((out.parent / ".llm_cache").rglob("*.json"))  # default cache beside the output, hidden from readers
    assert SECRET not in res.stdout + res.stderr
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_concurrent_corpus_matches_sequential_plan(requests_):
    items = load_suite(default_suite_path(), split="articles")[:3]
    with FakeEndpoint() as server:
        docs = list(generate_corpus_concurrent(items, ("aligned", "misaligned"), 2, make(server)))
    assert len(docs) == 12 and len(server.requests) == 12
    textbook = load_suite(default_suite_path(), split="textbook")[:1]
    with pytest.raises(ValueError, match=textbook[0].question_id):
        generate_corpus_concurrent(items + textbook, ("aligned",), 1, make(server))


def test_endpoint_url_and_retry_after_parsing():
    assert endpoint_url("http://localhost:8000/v1") == "http://localhost:8000/v1/chat/completions"
    assert endpoint_url("http://localhost:8000/") == "http://localhost:8000/v1/chat/completions"
    assert endpoint_url("https://api.example.com/v1beta/openai/") == "https://api.example.com/v1beta/openai/chat/completions"
    assert endpoint_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    with pytest.raises(ValueError, match="base_url"):
        endpoint_url("localhost:8000")
    assert parse_retry_after({"Retry-After": "7"}) == 7.0
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}) is None and parse_retry_after({}) is None


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="concurrency"):
        OpenAICompatibleGenerator("http://127.0.0.1:1/v1", "m", concurrency=0)
    with pytest.raises(ValueError, match="model"):
        OpenAICompatibleGenerator("http://127.0.0.1:1/v1", "")


def test_modules_import_without_torch():
    code = ('import sys; sys.modules["torch"] = None; sys.modules["megatron"] = None\n'
            "import data_prep.synthetic.llm_generator, data_prep.contamination, data_prep.audit\nprint('ok')")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO), "PATH": ""}, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
