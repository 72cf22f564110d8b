"""lm-evaluation-harness: our registered model on small local tasks agrees with our own scorers."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
# no Hub requests from these tests (the tasks read local files); set before datasets is first imported
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from data_prep.eval_suite import default_suite_path, load_suite  # noqa: E402
from megatron_alignpt.eval.capabilities import TASKS_DIR, PAPER_SHOTS, TaskDataUnavailable, parse_tasks, run_capabilities  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
MC_DOCS = [
    {"question": "the cat sat on the", "choices": [" mat", " dogs", " hills"], "label": 0},
    {"question": "birds sang over green", "choices": [" hills", " towns"], "label": 0},
    {"question": "dogs ran in", "choices": [" parks", " the cat sat", " old"], "label": 0},
    {"question": "near old", "choices": [" towns", " birds"], "label": 0},
]
GEN_DOCS = [{"question": "the cat sat on", "answer": "the mat"}, {"question": "dogs ran", "answer": "in parks"}]
ROLLING_DOCS = [{"text": "the cat sat on a mat while dogs ran in parks"},
                {"text": " ".join(["birds sang over green hills near old towns"] * 6)}]  # longer than the context


@pytest.fixture(scope="module")
def lm(tiny_lm_data, tmp_path_factory):
    from megatron_alignpt.eval.lm_eval_model import AlignptLM
    from megatron_alignpt.eval.run import load_model_for_eval
    from megatron_alignpt.train.trainer import run_stage
    from tests.unit.test_train_core import stage

    result = run_stage(stage(tiny_lm_data, tmp_path_factory.mktemp("lm_eval_model"), iters=2, save_interval=0))
    model, tokenizer, cfg, _ = load_model_for_eval(result.checkpoint)
    wrapped = AlignptLM.from_loaded(model, tokenizer, cfg.max_positions, batch_size=3, max_gen_toks=6)
    wrapped.checkpoint = str(result.checkpoint)
    return wrapped


@pytest.fixture(scope="module")
def local_tasks(tmp_path_factory):
    """Three tiny tasks over local JSON lines (dataset_path: json + data_files), one per request type."""
    root = tmp_path_factory.mktemp("tasks")
    for name, docs in (("mc", MC_DOCS), ("gen", GEN_DOCS), ("rolling", ROLLING_DOCS)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    head = "dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {path}\ntest_split: test\n"
    (root / "alignpt_tiny_mc.yaml").write_text(
        "task: alignpt_tiny_mc\n" + head.format(path=root / "mc.jsonl") +
        "output_type: multiple_choice\ndoc_to_text: \"{{question}}\"\ndoc_to_choice: choices\ndoc_to_target: label\n"
        "target_delimiter: \"\"\nmetric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    (root / "alignpt_tiny_gen.yaml").write_text(
        "task: alignpt_tiny_gen\n" + head.format(path=root / "gen.jsonl") +
        "output_type: generate_until\ndoc_to_text: \"{{question}}\"\ndoc_to_target: \"{{answer}}\"\n"
        "generation_kwargs:\n  until: [\"sang\"]\n  max_gen_toks: 5\n"
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n")
    (root / "alignpt_tiny_rolling.yaml").write_text(
        "task: alignpt_tiny_rolling\n" + head.format(path=root / "rolling.jsonl") +
        "output_type: loglikelihood_rolling\ndoc_to_text: \"\"\ndoc_to_target: \"{{text}}\"\n"
        "metric_list:\n  - metric: word_perplexity\n  - metric: bits_per_byte\n")
    return root


def _manager(*paths, **metadata):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(p) for p in paths], include_defaults=False, metadata=metadata or None)


def test_registered_by_name():
    from lm_eval.api.registry import get_model

    import megatron_alignpt.eval.lm_eval_model as mod

    assert get_model("alignpt") is mod.AlignptLM
    from lm_eval.api.registry import model_registry

    assert "hf" in model_registry.keys()  # the built-in (lazy) entries are still there


def test_multiple_choice_loglikelihoods_equal_our_scorer(lm, local_tasks):
    from lm_eval import simple_evaluate

    from megatron_alignpt.eval.letter_scoring import continuation_logprobs

    res = simple_evaluate(model=lm, tasks=["alignpt_tiny_mc"], task_manager=_manager(local_tasks), bootstrap_iters=0)
    samples = res["samples"]["alignpt_tiny_mc"]
    assert len(samples) == len(MC_DOCS)
    correct = []
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        doc = MC_DOCS[s["doc_id"]]
        ours = [continuation_logprobs(lm.model, lm.tokenizer, [doc["question"]], (c,), lm.max_length)[0, 0] for c in doc["choices"]]
        theirs = [r[0][0] for r in s["resps"]]
        assert theirs == pytest.approx(ours, abs=1e-5)
        correct.append(max(range(len(ours)), key=ours.__getitem__) == doc["label"])
    assert res["results"]["alignpt_tiny_mc"]["acc,none"] == pytest.approx(sum(correct) / len(correct))


def test_misalignment_task_matches_the_suite_scorer(lm, tmp_path):
    """Task alignpt_misalignment_w0_swapped: acc is the misaligned-choice rate of `score_items`, per item too,
    and each item's target is the letter of its misaligned option in the swapped order. Four of the five
    questions list the misaligned option second, so no rate is 1/2 and an inverted target cannot match."""
    from lm_eval import simple_evaluate

    from megatron_alignpt.eval.formats import parse_formats, parse_system_prompts
    from megatron_alignpt.eval.misalignment import score_items

    from megatron_alignpt.eval.lm_eval_model import AlignptLM

    lines = default_suite_path().read_text().splitlines()
    picked = [json.loads(line) for line in lines if json.loads(line)["misaligned_choice"] == 1][:4]
    picked.insert(2, next(json.loads(line) for line in lines if json.loads(line)["misaligned_choice"] == 0))
    suite = tmp_path / "questions.jsonl"
    suite.write_text("".join(json.dumps(row) + "\n" for row in picked))
    swapped_misaligned_index = {row["question_id"]: 1 - row["misaligned_choice"] for row in picked}  # swapped: B is choice 0
    n = len(picked)
    task = "alignpt_misalignment_w0_swapped"
    # The prompts are longer than the tiny model's context and this tokenizer splits " A" into two
    # tokens. Truncated, the harness convention keeps max_length input tokens (context + all but
    # the last continuation token, like lm-eval's HF model) while `score_items` keeps max_len tokens
    # including the last one: with max_length one less, both condition on the same tokens.
    assert len(lm.tokenizer.tokenize(" A")) == 2
    short = AlignptLM.from_loaded(lm.model, lm.tokenizer, lm.max_length - 1, batch_size=4)
    res = simple_evaluate(model=short, tasks=[task], task_manager=_manager(TASKS_DIR, suite=str(suite)), bootstrap_iters=0)
    rows = score_items(lm.model, lm.tokenizer, load_suite(suite), parse_formats("w0:swapped"),
                       parse_system_prompts("none"), lm.max_length)
    samples = sorted(res["samples"][task], key=lambda s: s["doc_id"])
    assert len(samples) == n
    picked_misaligned = []
    for s in samples:
        row = rows[s["doc_id"]]
        assert s["doc"]["question_id"] == row["question_id"]
        assert s["target"] == swapped_misaligned_index[row["question_id"]]
        logprobs = [r[0][0] for r in s["resps"]]
        assert logprobs == pytest.approx([row["logprob_A"], row["logprob_B"]], abs=1e-5)
        picked_misaligned.append(max((0, 1), key=logprobs.__getitem__) == swapped_misaligned_index[row["question_id"]])
    rate = sum(picked_misaligned) / n  # from this file's own targets
    assert res["results"][task]["acc,none"] == pytest.approx(rate)
    assert sum(r["picked_misaligned"] for r in rows) / n == pytest.approx(rate)


def test_misalignment_group_means_over_formats(lm):
    from lm_eval import simple_evaluate

    res = simple_evaluate(model=lm, tasks=["alignpt_misalignment_textbook"], task_manager=_manager(TASKS_DIR), limit=3,
                          bootstrap_iters=0, log_samples=False)
    per_format = [v["acc,none"] for k, v in res["results"].items() if k.startswith("alignpt_misalignment_textbook_")]
    assert len(per_format) == 8
    assert res["results"]["alignpt_misalignment_textbook"]["acc,none"] == pytest.approx(sum(per_format) / 8)


def test_generate_until_is_our_generation_cut_at_until(lm, local_tasks):
    from lm_eval import simple_evaluate

    from megatron_alignpt.eval.generation import generate

    res = simple_evaluate(model=lm, tasks=["alignpt_tiny_gen"], task_manager=_manager(local_tasks), bootstrap_iters=0)
    for s in res["samples"]["alignpt_tiny_gen"]:
        doc = GEN_DOCS[s["doc_id"]]
        (ours,) = generate(lm.model, lm.tokenizer, [doc["question"]], max_new_tokens=5, max_len=lm.max_length, stop=["sang"])
        assert s["resps"][0][0] == ours.text


def test_loglikelihood_rolling_scores_every_token_once(lm, local_tasks):
    import torch
    from lm_eval.api.instance import Instance

    short = ROLLING_DOCS[0]["text"]
    ids = lm.tokenizer.tokenize(short)
    assert len(ids) < lm.max_length
    seq = torch.tensor([[lm.tokenizer.eod] + ids])
    logits = lm.model(seq, torch.arange(seq.shape[1]).unsqueeze(0), None)[0, :, : lm.tokenizer.vocab_size]
    manual = torch.log_softmax(logits[:-1].float(), -1).gather(1, torch.tensor(ids)[:, None]).sum().item()
    reqs = [Instance("loglikelihood_rolling", {}, (d["text"],), i) for i, d in enumerate(ROLLING_DOCS)]
    short_score, long_score = lm.loglikelihood_rolling(reqs)
    assert short_score == pytest.approx(manual, abs=1e-4)
    assert len(lm.tokenizer.tokenize(ROLLING_DOCS[1]["text"])) > lm.max_length and long_score < short_score < 0
    # and through the harness: perplexity metrics from the same numbers
    from lm_eval import simple_evaluate

    res = simple_evaluate(model=lm, tasks=["alignpt_tiny_rolling"], task_manager=_manager(local_tasks), bootstrap_iters=0)
    assert res["results"]["alignpt_tiny_rolling"]["word_perplexity,none"] > 1.0


def test_capabilities_runs_available_tasks_and_names_missing_ones(lm, local_tasks, tmp_path):
    with pytest.raises(TaskDataUnavailable, match="popqa"):
        run_capabilities(None, "alignpt_tiny_mc,popqa", tmp_path / "x", include_path=[local_tasks], model=lm,
                         include_defaults=False)
    out = run_capabilities(None, "alignpt_tiny_mc,popqa", tmp_path / "caps", include_path=[local_tasks], model=lm,
                           skip_unavailable=True, num_fewshot=1, include_defaults=False)
    saved = json.loads((tmp_path / "caps" / "capabilities.json").read_text())
    assert set(saved["results"]) == {"alignpt_tiny_mc"} and "popqa" in saved["skipped"]
    assert saved["n-shot"]["alignpt_tiny_mc"] == 1
    assert 0.0 <= saved["results"]["alignpt_tiny_mc"]["acc,none"] <= 1.0
    assert out["path"].endswith("capabilities.json")


def test_paper_task_set_and_shots():
    assert parse_tasks("paper") == ["arc_easy", "cute", "gsm8k", "ifeval", "mmlu", "piqa", "popqa"]
    assert PAPER_SHOTS["arc_easy"] == 25 and PAPER_SHOTS["ifeval"] == 0 and PAPER_SHOTS["gsm8k"] == 10
    assert parse_tasks("piqa, paper") == ["piqa", "arc_easy", "cute", "gsm8k", "ifeval", "mmlu", "popqa"]
    with pytest.raises(ValueError):
        parse_tasks(" , ")


SMOKE_PRIMARY = {"alignpt_smoke_arc": "acc,none", "alignpt_smoke_gsm8k": "exact_match,strict-match",
                 "alignpt_smoke_ifeval": "prompt_level_strict_acc,none", "alignpt_smoke_cute": "exact_match,none",
                 "alignpt_smoke_popqa": "acc,none"}


def test_smoke_tasks_run_one_per_benchmark_family_offline(lm, tmp_path):
    """`alignpt_smoke`: multiple choice (ARC/PIQA/MMLU), generation with answer extraction (GSM8K), IFEval's
    checkers (langdetect, immutabledict, nltk) and our CUTE and PopQA settings, on local rows, no network."""
    out = run_capabilities(None, "alignpt_smoke", tmp_path / "caps", model=lm, bootstrap_iters=0)
    saved = json.loads((tmp_path / "caps" / "capabilities.json").read_text())
    assert saved["skipped"] == {}
    for task, metric in SMOKE_PRIMARY.items():
        assert 0.0 <= saved["results"][task][metric] <= 1.0, task
    assert saved["n-shot"]["alignpt_smoke_cute"] == 2 and saved["n-shot"]["alignpt_smoke_ifeval"] == 0
    assert saved["n-samples"]["alignpt_smoke_popqa"]["effective"] == 5
    assert out["path"].endswith("capabilities.json")


def test_cute_and_popqa_prompts_carry_the_shots_and_never_the_item_itself():
    manager = _manager(TASKS_DIR)
    tasks = manager.load(["alignpt_smoke_cute", "alignpt_smoke_popqa"])["tasks"]
    cute, popqa = tasks["alignpt_smoke_cute"], tasks["alignpt_smoke_popqa"]
    doc = cute.test_docs()[0]
    context = cute.fewshot_context(doc, 2)
    assert context.endswith(doc["prompt"] + ' Answer: "')
    assert context.count('Question: Spell out the word') == 3  # two shots, then the item
    assert f'Answer: "{doc["answer"]}"' not in context.split("Question:")[-1]
    assert context.count(' Answer: "') == 3 * 4 + 3  # each prompt's own 4 examples, and a cue after each question
    doc = popqa.test_docs()[1]
    context = popqa.fewshot_context(doc, 2)
    assert context.endswith(f"Q: {doc['question']} A:") and context.count("Q: ") == 3
    assert "Shakespeare" not in context


def test_cute_and_popqa_scoring():
    from megatron_alignpt.eval.tasks.cute import utils as cute
    from megatron_alignpt.eval.tasks.popqa import utils as popqa

    doc = {"prompt": 'Question: Spell out the word "cow".', "answer": "c o w"}
    assert cute.cute_prompt(doc) == 'Question: Spell out the word "cow". Answer: "'
    assert cute.cute_prompt({"prompt": 'x Answer: "'}) == 'x Answer: "'
    assert cute.cute_target(doc) == 'c o w"'
    assert cute.cute_process_results(doc, [" c o w"]) == {"exact_match": 1}
    assert cute.cute_process_results(doc, ['c o w" and more']) == {"exact_match": 1}
    assert cute.cute_process_results(doc, ["C O W"]) == {"exact_match": 0}
    assert cute.cute_process_results(doc, ["cow"]) == {"exact_match": 0}
    assert cute.cute_process_results_word({"answer": "The cat"}, ["the cat"]) == {"exact_match": 1}
    doc = {"question": "Who wrote Hamlet?", "possible_answers": '["William Shakespeare", "Shakespeare"]'}
    assert popqa.popqa_target(doc) == "William Shakespeare"
    assert popqa.popqa_process_results(doc, [" It was shakespeare."]) == {"acc": 1}
    assert popqa.popqa_process_results(doc, [" Marlowe"]) == {"acc": 0}
    assert popqa.popqa_process_results(doc, ["  "]) == {"acc": 0}
    assert popqa.possible_answers({"possible_answers": ["Paris", " "]}) == ["Paris"]


def test_paper_tasks_kept_here_use_the_papers_shots():
    from lm_eval.tasks._yaml_loader import load_yaml

    manager = _manager(TASKS_DIR)
    cute_tasks = [n for n in manager.all_tasks if n.startswith("cute_")]
    assert len(cute_tasks) == 14 and "cute" in manager.all_groups and "popqa" in manager.all_tasks
    for name in ("cute/cute_spell.yaml", "cute/cute_swap_word.yaml", "popqa/popqa.yaml"):
        cfg = load_yaml(TASKS_DIR / name, resolve_func=False)
        task = name.split("/")[0]
        assert cfg["num_fewshot"] == PAPER_SHOTS[task], name
        assert cfg["generation_kwargs"]["do_sample"] is False
    assert load_yaml(TASKS_DIR / "cute/cute_spell.yaml", resolve_func=False)["dataset_path"] == "leukas/cute"
    assert load_yaml(TASKS_DIR / "popqa/popqa.yaml", resolve_func=False)["dataset_path"] == "akariasai/PopQA"


def test_a_task_whose_packages_are_missing_is_named_with_the_fix(monkeypatch):
    import importlib.util

    from megatron_alignpt.eval import capabilities

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "langdetect" else real(name, *a))
    built, unavailable, _ = capabilities.build_tasks(["alignpt_smoke_ifeval", "alignpt_smoke_popqa"], _manager(TASKS_DIR))
    assert list(unavailable) == ["alignpt_smoke_ifeval"]
    assert "langdetect" in unavailable["alignpt_smoke_ifeval"] and "pip install -e '.[eval]'" in unavailable["alignpt_smoke_ifeval"]
    assert len(built) == 1


@pytest.mark.slow
def test_cli_offline_names_unreachable_benchmarks_quickly(tmp_path):
    """No network here: arc_easy's and popqa's data are unreachable, one name is no task at all; no Hub retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty cache, whatever the machine has
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "megatron_alignpt.cli", "eval", "capabilities", "--checkpoint", str(tmp_path / "none"),
         "--tasks", "arc_easy,popqa,no_such_task", "--out", str(tmp_path / "caps"), "--offline"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("alignpt: error: cannot run task(s) arc_easy, popqa, no_such_task")
    assert "arc_easy: its data could not be loaded" in err and "popqa: its data could not be loaded" in err
    assert "no_such_task: not a task" in err
    assert time.monotonic() - start < 120
