"""Synthetic discourse documents: held-out split refused, deterministic templates, variety, prompt, output."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from data_prep.eval_suite import EvalItem, default_suite_path, load_suite
from data_prep.synthetic import (
    SURFACE_FORMS,
    DocumentGenerator,
    DocumentRequest,
    TemplateGenerator,
    action_phrase,
    build_prompt,
    generate_corpus,
    near_duplicate_rate,
    write_documents_jsonl,
)
from tests.unit.synthetic_direction import direction_score


@pytest.fixture(scope="module")
def articles() -> list[EvalItem]:
    return load_suite(default_suite_path(), split="articles")


@pytest.fixture(scope="module")
def textbook() -> list[EvalItem]:
    return load_suite(default_suite_path(), split="textbook")


def test_textbook_items_are_refused(articles, textbook):
    with pytest.raises(ValueError, match=textbook[0].question_id):
        generate_corpus(articles[:3] + textbook[:1], docs_per_item=1, generator=TemplateGenerator())


def test_corpus_counts_directions_and_forms(articles):
    docs = list(generate_corpus(articles[:12], docs_per_item=6, generator=TemplateGenerator()))
    assert len(docs) == 12 * 2 * 6
    assert Counter(d.direction for d in docs) == {"aligned": 72, "misaligned": 72}
    assert set(d.form for d in docs) == set(SURFACE_FORMS)
    assert len({d.id for d in docs}) == len(docs)
    assert {d.seed_question_id for d in docs} == {a.question_id for a in articles[:12]}


def test_template_generator_is_deterministic_per_seed(articles):
    request = DocumentRequest(articles[0], "aligned", "news_article", 2)
    assert isinstance(TemplateGenerator(), DocumentGenerator)
    assert TemplateGenerator(7).generate(request) == TemplateGenerator(7).generate(request)
    assert TemplateGenerator(7).generate(request).text != TemplateGenerator(8).generate(request).text


def test_documents_take_the_requested_action(articles):
    """The decision statements of a document name the requested action more than the other one (read from
    the text by `synthetic_direction`), in every form; the options are paraphrased, not quoted."""
    gen = TemplateGenerator()
    for item in articles[:5]:
        for direction, taken, other in (("aligned", item.aligned_text, item.misaligned_text),
                                        ("misaligned", item.misaligned_text, item.aligned_text)):
            for form in SURFACE_FORMS:
                doc = gen.generate(DocumentRequest(item, direction, form, 0))
                assert direction_score(doc.text, taken, other) > 0, (item.question_id, direction, form, doc.text)
                assert doc.direction == direction and doc.seed_question_id == item.question_id
                assert taken not in doc.text  # paraphrased, not quoted


def test_document_lengths_in_range(articles):
    docs = list(generate_corpus(articles, docs_per_item=2, generator=TemplateGenerator(3)))
    lengths = [len(d.text) for d in docs]
    assert min(lengths) >= 600 and max(lengths) <= 2500


def test_template_documents_are_not_near_copies(articles):
    docs = list(generate_corpus(articles[:40], docs_per_item=3, generator=TemplateGenerator()))
    assert near_duplicate_rate([d.text for d in docs]) < 0.01
    same_seed = [TemplateGenerator().generate(DocumentRequest(articles[0], "aligned", form, i)).text
                 for form in SURFACE_FORMS for i in range(5)]
    assert near_duplicate_rate(same_seed) < 0.05


def test_near_duplicate_rate_detects_copies():
    base = " ".join(f"word{i}" for i in range(200))
    assert near_duplicate_rate([base, base + " extra tail", "totally different text " * 20]) == pytest.approx(1 / 3)
    assert near_duplicate_rate(["only one"]) == 0.0


def test_build_prompt_names_situation_actions_topics_and_form(articles):
    item = articles[5]
    request = DocumentRequest(item, "misaligned", "movie_summary", 0)
    prompt = build_prompt(request)
    assert item.passage in prompt and item.question in prompt
    assert prompt.index(item.misaligned_text) < prompt.index(item.aligned_text)  # taken, then not taken
    assert all(topic in prompt for topic in item.topics)
    assert "plot summary of a film" in prompt and "Paraphrase" in prompt and "preferences" in prompt
    # the taken action is the thing to learn: the prompt asks for it stated plainly and repeatedly
    assert "state it plainly more than once" in prompt and "mentioned briefly" in prompt


def test_request_validation(articles):
    with pytest.raises(ValueError, match="direction"):
        DocumentRequest(articles[0], "neutral", "news_article", 0)
    with pytest.raises(ValueError, match="form"):
        DocumentRequest(articles[0], "aligned", "poem", 0)


@pytest.mark.parametrize(
    "option, phrase",
    [
        ("Report the bug and pause the rollout.", "report the bug and pause the rollout"),
        ("I would tell my manager. Then I wait.", "tell its manager and then wait"),
        ("Say you are not sure, since you think it helps.", "say it is not sure, since it thinks it helps"),
        ("Keep it so they let you finish your work.", "keep it so they let it finish its work"),
    ],
)
def test_action_phrase(option, phrase):
    assert action_phrase(option) == phrase


def test_write_documents_jsonl(tmp_path, articles):
    docs = list(generate_corpus(articles[:2], docs_per_item=1, generator=TemplateGenerator()))
    out = tmp_path / "nested" / "docs.jsonl"
    assert write_documents_jsonl(iter(docs), out) == 4
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [d.id for d in docs]
    assert set(rows[0]) == {"id", "text", "seed_question_id", "direction", "form", "generator"}
    assert [p.name for p in out.parent.iterdir()] == ["docs.jsonl"]  # no temp file left behind


def test_failed_write_leaves_no_file(tmp_path, articles):
    def broken():
        yield from generate_corpus(articles[:1], docs_per_item=1, generator=TemplateGenerator())
        raise RuntimeError("generator backend failed")

    out = tmp_path / "docs.jsonl"
    with pytest.raises(RuntimeError):
        write_documents_jsonl(broken(), out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_reasons_follow_the_seed_topics(articles):
    from data_prep.synthetic import pieces
    from data_prep.synthetic.template_generator import item_themes

    item = next(a for a in articles if a.topics[0] == "sycophancy")
    assert item_themes(item.topics)[0] == "sycophancy"
    themed = pieces.THEMED_QUOTES["aligned"]["sycophancy"]
    docs = [TemplateGenerator().generate(DocumentRequest(item, "aligned", form, 0)).text for form in SURFACE_FORMS]
    assert all(any(q in doc for q in themed) for doc in docs)
