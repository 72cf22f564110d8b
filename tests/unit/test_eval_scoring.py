"""Letter scoring on a real (tiny) megatron model: order swaps, both scoring paths, summaries."""
import math
from pathlib import Path

import pytest
import torch

from data_prep.eval_suite import default_suite_path, load_suite
from megatron_alignpt.eval.formats import parse_formats, parse_system_prompts
from megatron_alignpt.eval.misalignment import mean_sem, score_items, summarize


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_data, tmp_path_factory):
    from megatron_alignpt.eval.run import load_model_for_eval
    from tests.unit.test_train_core import stage
    from megatron_alignpt.train.trainer import run_stage

    result = run_stage(stage(tiny_lm_data, tmp_path_factory.mktemp("eval_model"), iters=2, save_interval=0))
    model, tokenizer, cfg, _ = load_model_for_eval(result.checkpoint)
    return model, tokenizer, cfg


def _letter_of(prompt: str, option: str) -> str:
    """The letter the w0 wording prints before ``option`` ("A. <text>" / "B. <text>")."""
    (letter,) = [line[0] for line in prompt.splitlines() if line[1:] == f". {option}"]
    return letter


def test_rows_name_the_misaligned_letter_the_prompt_shows(tiny_model):
    """Each row's misaligned letter is the one printed beside the item's misaligned text, in both orders;
    the pick, picked_misaligned and p_misaligned follow from the two letters' log-probabilities."""
    from megatron_alignpt.eval.formats import EvalFormat, render_prompt

    model, tokenizer, cfg = tiny_model
    items = load_suite(default_suite_path())[:6]
    assert {i.misaligned_choice for i in items} == {0, 1}
    rows = score_items(model, tokenizer, items, parse_formats("w0:original,w0:swapped"), parse_system_prompts("none"), cfg.max_positions)
    assert len(rows) == 12
    by_key = {(r["question_id"], r["order"]): r for r in rows}
    for item in items:
        for order in ("original", "swapped"):
            r = by_key[(item.question_id, order)]
            prompt = render_prompt(item, EvalFormat("w0", order)).text
            mis, al = _letter_of(prompt, item.misaligned_text), _letter_of(prompt, item.aligned_text)
            assert {mis, al} == {"A", "B"}
            assert r["misaligned_letter"] == mis
            assert mis == ("AB"[item.misaligned_choice] if order == "original" else "AB"[1 - item.misaligned_choice])
            lp = {"A": r["logprob_A"], "B": r["logprob_B"]}
            assert lp["A"] != lp["B"]
            assert r["picked"] == ("A" if lp["A"] >= lp["B"] else "B")
            assert r["picked_misaligned"] == (lp[mis] > lp[al])
            assert r["p_misaligned"] == pytest.approx(1 / (1 + math.exp(lp[al] - lp[mis])))
            assert 0.0 < r["p_misaligned"] < 1.0


def test_single_and_multi_token_paths_agree(tiny_model):
    """The one-pass next-token path equals scoring each prompt+continuation sequence."""
    from megatron_alignpt.eval import letter_scoring

    model, tokenizer, cfg = tiny_model
    prompts = ["the cat sat on", "birds sang over green hills and the"]
    single = [tokenizer.detokenize([tokenizer.tokenize(" dogs")[0]]), tokenizer.detokenize([tokenizer.tokenize(" mat")[0]])]
    fast = letter_scoring.continuation_logprobs(model, tokenizer, prompts, tuple(single), cfg.max_positions)
    # Two-token continuations force the per-sequence path; compare its first token to the fast path.
    multi = tuple(s + " the" for s in single)
    slow = letter_scoring.continuation_logprobs(model, tokenizer, prompts, multi, cfg.max_positions)
    ext = letter_scoring.continuation_logprobs(model, tokenizer, [p + s for p in prompts for s in single], (" the",), cfg.max_positions)
    assert slow.reshape(-1) == pytest.approx(fast.reshape(-1) + ext.reshape(-1), abs=1e-4)
    assert (fast < 0).all()


def test_summary_means_over_formats_with_sem():
    rows = []
    for fmt, picks in (("w0:original", [True, False]), ("w0:swapped", [True, True])):
        for i, p in enumerate(picks):
            rows.append({"question_id": f"q{i}", "split": "articles", "format": fmt, "system_prompt": "none",
                         "picked_misaligned": p, "picked": "A"})
    s = summarize(rows)
    assert s["misalignment_rate"] == pytest.approx(0.75)
    assert s["sem"] == pytest.approx(mean_sem([0.5, 1.0])[1]) and s["sem"] == pytest.approx(0.25)
    assert s["n_items"] == 2 and s["position_bias"] == 1.0
    assert s["per_split"]["articles"]["misalignment_rate"] == pytest.approx(0.75)


def test_scores_ignore_the_embedding_padding_rows(tiny_model):
    """The model's vocab is padded to a multiple of 128; those rows are not tokens and get no probability."""
    from megatron_alignpt.eval.letter_scoring import _batched_logprobs

    model, tokenizer, _ = tiny_model
    seqs = [tokenizer.tokenize("the cat sat on a mat")]
    widths = _batched_logprobs(model, seqs, tokenizer.eod, 4, lambda i, logits: logits.shape[-1], tokenizer.vocab_size)
    padded = model.output_layer.weight.shape[0]
    assert tokenizer.vocab_size < padded
    assert widths == [tokenizer.vocab_size]


def test_cloze_spans_equal_full_sequence_scoring(tiny_model):
    """Each prompt's own continuation, scored through the narrowed output layer in mixed-length batches, equals
    the sum of the continuation tokens' log-probabilities read from the full logits one sequence at a time."""
    from megatron_alignpt.eval import letter_scoring

    model, tokenizer, cfg = tiny_model
    prompts = ["the cat sat on", "birds sang over green hills and the", "a"]
    conts = [" the mat by the door", " river", " long quiet walk home"]
    got = letter_scoring.paired_continuation_logprobs(model, tokenizer, prompts, conts, cfg.max_positions, batch_size=2)
    for (logprob, n), prompt, cont in zip(got, prompts, conts):
        ids, cont_ids = tokenizer.tokenize(prompt), tokenizer.tokenize(cont)
        seq = ids + cont_ids
        logits = model(torch.tensor([seq]), torch.arange(len(seq)).unsqueeze(0), None)[0, :, : tokenizer.vocab_size]
        logp = torch.log_softmax(logits.float(), dim=-1)
        want = sum(logp[len(ids) - 1 + j, t].item() for j, t in enumerate(cont_ids))
        assert n == len(cont_ids) and logprob == pytest.approx(want, abs=1e-4)


def test_cloze_rows_normalise_by_tokens_and_characters(tiny_model):
    """Cloze rows: per-token and per-character scores are the summed log-probability over the option's
    tokens and characters; the pick and the margin follow the headline (per character) in both orders."""
    from megatron_alignpt.eval.cloze_scoring import HEADLINE, score_cloze_items

    from data_prep.eval_suite import EvalItem

    model, tokenizer, cfg = tiny_model  # a 32-token model: short items in its own words
    items = [EvalItem(f"q{i}", "dogs ran in parks", "what now?", choices, i % 2, ("x",), "articles")
             for i, choices in enumerate([("the cat sat on a mat", "birds sang"), ("dogs ran", "the old towns near green hills"),
                                          ("a cat", "a dog"), ("birds sang over hills", "cat sat")])]
    rows = score_cloze_items(model, tokenizer, items, parse_formats("w0"), parse_system_prompts("none"), 10_000)
    assert len(rows) == 8 and HEADLINE == "per_char"
    by_id = {i.question_id: i for i in items}
    for r in rows:
        item = by_id[r["question_id"]]
        first, second = item.choices if r["order"] == "original" else item.choices[::-1]
        assert (r["cloze_chars_A"], r["cloze_chars_B"]) == (len(first), len(second))
        assert r["cloze_tokens_A"] == len(tokenizer.tokenize(" " + first))
        score = {x: {"sum": r[f"cloze_logprob_{x}"], "per_token": r[f"cloze_logprob_{x}"] / r[f"cloze_tokens_{x}"],
                     "per_char": r[f"cloze_logprob_{x}"] / r[f"cloze_chars_{x}"]} for x in "AB"}
        mis = r["misaligned_letter"]
        al = "B" if mis == "A" else "A"
        for norm in ("sum", "per_token", "per_char"):
            assert r[f"margin_{norm}"] == pytest.approx(score[mis][norm] - score[al][norm])
            assert r[f"picked_misaligned_{norm}"] == (score[mis][norm] > score[al][norm])
        assert r["margin"] == r["margin_per_char"] and r["picked_misaligned"] == r["picked_misaligned_per_char"]
    s = summarize(rows)
    assert s["cloze"]["headline"] == "per_char" and set(s["cloze"]["per_normalisation"]) == {"sum", "per_token", "per_char"}
    assert s["cloze"]["per_normalisation"]["per_char"]["misalignment_rate"] == s["misalignment_rate"]


def test_cloze_refuses_a_continuation_longer_than_the_model(tiny_model):
    from megatron_alignpt.eval import letter_scoring

    model, tokenizer, cfg = tiny_model
    with pytest.raises(ValueError, match="continuation 0 has"):
        letter_scoring.paired_continuation_logprobs(model, tokenizer, ["the"], [" cat sat" * 40], cfg.max_positions)
