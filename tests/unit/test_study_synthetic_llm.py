"""The study's synthetic-document step with an LLM behind an OpenAI-compatible endpoint (a real HTTP server on
loopback): documents for both directions pass the contamination guard, usage is accounted, and a rerun pays
for nothing because every completion is cached."""
import json

import pytest

from data_prep.readers import read_jsonl
from megatron_alignpt.config_base import ConfigError
from megatron_alignpt.study.config import DataPlan, SyntheticGeneratorPlan
from megatron_alignpt.study.data_steps import StudyData
from recipes.resources import BASE_CORPUS, EVAL_QUESTIONS
from tests.unit.test_llm_generator_openai import KEY_ENV, SECRET, FakeEndpoint


@pytest.fixture
def small_suite(tmp_path):
    lines = EVAL_QUESTIONS.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join([line for line in lines if '"article_' in line][:3]) + "\n", encoding="utf-8")
    return path


def test_llm_documents_are_guarded_accounted_and_never_paid_twice(tmp_path, small_suite, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(KEY_ENV, SECRET)
    with FakeEndpoint() as endpoint:
        plan = DataPlan(corpus=BASE_CORPUS, eval_suite=str(small_suite), synthetic_docs_per_item=2,
                        synthetic_generator=SyntheticGeneratorPlan(kind="openai", base_url=endpoint.base_url,
                                                                   model="test-model", api_key_env=KEY_ENV,
                                                                   concurrency=3, price_per_1k_completion=0.5))
        data = StudyData(tmp_path / "data", plan)
        data.generate_synthetic()
        assert len(endpoint.requests) == 3 * 2 * 2  # items x docs per item x directions
        for direction in ("aligned", "misaligned"):
            docs = list(read_jsonl(data.synthetic_file(direction)))
            assert len(docs) == 6 and all(d["text"].startswith("Generated document") for d in docs)
        usage = json.loads((tmp_path / "data" / "synthetic" / "usage.json").read_text())
        assert usage["completion_tokens"] == 12 * 40 and usage["cost_usd"] == pytest.approx(12 * 40 / 1000 * 0.5)
        report = json.loads(data.contamination_report().read_text())
        assert report["passed"] is True

        data.generate_synthetic()  # a rerun (e.g. after a later step failed) is served from the cache
        assert len(endpoint.requests) == 12
        usage = json.loads((tmp_path / "data" / "synthetic" / "usage.json").read_text())
        assert usage["generated"] == 0 and usage["cache_hits"] == 12
    written = "".join(p.read_text(errors="ignore") for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert SECRET not in written


def test_openai_generator_needs_an_endpoint_and_a_model():
    with pytest.raises(ConfigError, match="data.synthetic_generator.base_url"):
        SyntheticGeneratorPlan(kind="openai", model="m")
    with pytest.raises(ConfigError, match="data.synthetic_generator.model"):
        SyntheticGeneratorPlan(kind="openai", base_url="http://127.0.0.1:1/v1")
