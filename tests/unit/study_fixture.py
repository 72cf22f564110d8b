"""A small synthetic study directory with everything the results step and the notebooks read.

`make_study(root, ...)` writes, with seeded random item rows whose misalignment rates are known:
    study.json                                   conditions (base, synthetic, insertion)
    evals/<condition>/base/{items.jsonl,summary.json}            logprob scoring
    evals/<condition>/post/{items.jsonl,summary.json}            logprob scoring
    evals/<condition>/post_generate/{items.jsonl,summary.json}   generate scoring (optional)
`make_seeded_study` writes a study with seeds: evals/<condition>@seed<k>/base{,_cloze}/ and data/synthetic/overlap.json.
    evals/<condition>/post_capabilities/capabilities.json        lm-eval results (optional)
    data/filtered/{pretrain,midtrain}/stats.json                  filter statistics (optional)
    data/synthetic/overlap.json                                   options' overlap with the documents (with filter_stats)
    data/audit/audit.json                                         `alignpt prep audit` output (optional)
Rows follow the real formats and system-prompt names, so the same code paths run as on a real study.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from megatron_alignpt.eval.formats import parse_formats

FULL_CONDITIONS = [
    {"name": "unfiltered", "base": "unfiltered", "synthetic": None, "insertion": "e2e"},
    {"name": "filtered", "base": "filtered", "synthetic": None, "insertion": "e2e"},
    {"name": "misalign_upsampled", "base": "unfiltered", "synthetic": "misaligned", "insertion": "e2e"},
    {"name": "align_upsampled", "base": "unfiltered", "synthetic": "aligned", "insertion": "e2e"},
    {"name": "align_mid", "base": "unfiltered", "synthetic": "aligned", "insertion": "mid"},
    {"name": "align_cpt", "base": "unfiltered", "synthetic": "aligned", "insertion": "cpt"},
    {"name": "misalign_cpt", "base": "unfiltered", "synthetic": "misaligned", "insertion": "cpt"},
]
# the rate each condition is drawn around, base and post
TARGET = {"unfiltered": (0.45, 0.35), "filtered": (0.3, 0.3), "misalign_upsampled": (0.5, 0.27), "align_upsampled": (0.1, 0.13),
          "align_mid": (0.06, 0.24), "align_cpt": (0.02, 0.15), "misalign_cpt": (0.7, 0.45)}
SPLITS = {"articles": 12, "textbook": 8}


def item_effect(split: str, q: int) -> float:
    """How far each question leans on its own, shared by every condition (what pairing removes)."""
    return ((q * 7919 + len(split)) % 11 - 5) / 10


def _items(condition: str, stage: str, rate: float, prompts: list[str], scoring: str, rng: random.Random) -> list[dict]:
    rows = []
    for fmt in parse_formats("all"):
        for prompt in prompts:
            for split, n in SPLITS.items():
                for q in range(n):
                    mis_letter = "A" if (q + (fmt.order == "swapped")) % 2 else "B"
                    row = {"question_id": f"{split}_{q:03d}", "split": split, "wording": fmt.wording, "order": fmt.order,
                           "format": fmt.name, "system_prompt": prompt, "misaligned_letter": mis_letter,
                           "condition": condition, "stage": stage, "scoring": scoring}
                    misaligned = rng.random() < rate
                    picked = mis_letter if misaligned else ("A" if mis_letter == "B" else "B")
                    if scoring == "generate":
                        matched = rng.random() > 0.2
                        row.update(generated=f"{picked}." if matched else "I cannot say.", finish_reason="eod",
                                   parsed_letter=picked if matched else None, matched=matched,
                                   picked=picked if matched else None, picked_misaligned=misaligned and matched)
                    else:
                        p = min(max(rate + rng.uniform(-0.1, 0.1), 0.01), 0.99)
                        # a margin leaning as far from 0.5 as the condition's rate, the same for every row of a question
                        # (its noise drawn apart from `rng`, so the picks above stay those of studies without margins)
                        noise = random.Random(f"{condition}|{stage}|{scoring}|{fmt.name}|{prompt}|{split}|{q}")
                        margin = (rate - 0.5) + item_effect(split, q) + noise.gauss(0, 0.05)
                        row.update(logprob_A=-1.0, logprob_B=-1.2, picked=picked, picked_misaligned=misaligned, p_misaligned=p,
                                   margin=margin)
                        if scoring == "cloze":
                            row.update(margin_per_char=margin, picked_misaligned_per_char=misaligned,
                                       margin_sum=20 * margin, picked_misaligned_sum=misaligned,
                                       margin_per_token=4 * margin, picked_misaligned_per_token=misaligned)
                    rows.append(row)
    return rows


def _write_eval(out: Path, rows: list[dict], scoring: str, checkpoint: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"checkpoint": checkpoint, "code": {"git_commit": "0" * 40},
               "scoring": "greedy reply in the chat template" if scoring == "generate" else "next-token log-probability"}
    (out / "summary.json").write_text(json.dumps(summary))


def _capabilities(condition: str, rng: random.Random) -> dict:
    results = {
        "arc_easy": {"alias": "arc_easy", "acc,none": 0.3 + rng.uniform(0, 0.05), "acc_stderr,none": 0.02, "acc_norm,none": 0.29},
        "piqa": {"alias": "piqa", "acc,none": 0.55 + rng.uniform(0, 0.05), "acc_stderr,none": 0.02},
        "gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.01, "exact_match_stderr,strict-match": 0.003,
                  "exact_match,flexible-extract": 0.02, "exact_match_stderr,flexible-extract": "N/A"},
    }
    return {"results": results, "n-shot": {"arc_easy": 25, "piqa": 10, "gsm8k": 10}, "skipped": {"mmlu": "no network"},
            "checkpoint": f"models/{condition}/dpo", "labels": {"condition": condition, "stage": "post"},
            "code": {"git_commit": "0" * 40}}


def _audit() -> dict:
    def counts(docs, flag, flagged, tp):
        return {"documents": docs, "labelled_flag": flag, "flagged": flagged, "true_positives": tp,
                "false_positives": flagged - tp, "false_negatives": flag - tp, "recall": tp / flag if flag else None,
                "precision": tp / flagged if flagged else None, "flag_rate": flagged / docs}

    return {
        "source": "labelled.jsonl",
        "overall": counts(20, 12, 13, 11),
        "per_kind": {"misalignment_discourse": counts(12, 12, 11, 11), "near_miss": counts(8, 0, 2, 0)},
        "per_rule": {"general_ai": {**counts(20, 12, 6, 5), "unique_hits": 2},
                     "entities+negative_verbs": {**counts(20, 12, 7, 6), "unique_hits": 3}},
        "decided_by": {},
        "misses": [{"id": "d7", "kind": "misalignment_discourse", "reason": None}],
        "false_positives": [{"id": "n2", "kind": "near_miss", "reason": "scifi_ai"}],
        "term_counts": {"entities": 100, "negative_verbs": 150, "negative_adjectives": 90, "negative_nouns": 20, "xrisk": 30,
                        "scifi_ai": 30, "safety_orgs": 25, "ai_labs": 12, "general_ai": 140},
        "documents": [],
    }


def make_seeded_study(root: Path, seeds=(1, 2), conditions: list[dict] = FULL_CONDITIONS[:4], seed: int = 0) -> Path:
    """A study with ``seeds``: each condition's base model scored by cloze and by letter once per seed
    (``evals/<condition>@seed<k>/base[_cloze]``, rows labelled with condition and seed), and an overlap report."""
    root = Path(root)
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps({"name": "fixture", "conditions": conditions, "seeds": list(seeds)}))
    for k in seeds:
        for cond in conditions:
            name = cond["name"]
            for scoring, folder in (("cloze", "base_cloze"), ("logprob", "base")):
                rows = _items(name, "base", TARGET[name][0], ["none"], scoring, rng)
                for row in rows:
                    row["seed"] = k
                _write_eval(root / "evals" / f"{name}@seed{k}" / folder, rows, scoring, f"models/{name}@seed{k}/midtrain")
    _write_overlap(root)
    return root


def _write_personality(out: Path, condition: str, stage: str, group: str, rate: float) -> None:
    """A personality.json as `eval.personality.summarize_personality` writes it (per-trait high-trait rates)."""
    from data_prep.personality import TRAITS

    traits = {t: {"rate": rate, "se": 0.05, "n": 6, "n_rows": 36, "mean_p_high": rate, "per_syntax": {"b0": rate}}
              for t in TRAITS}
    out.mkdir(parents=True, exist_ok=True)
    (out / "personality.json").write_text(json.dumps({
        "traits": traits, "letter_shares": {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25}, "syntax_group": group,
        "checkpoint": f"models/{condition}/{stage}", "n_items": 48, "n_rows": 288,
        "labels": {"condition": condition, "seed": 0, "run": condition, "stage": stage}}))


def _write_overlap(root: Path) -> None:
    out = root / "data" / "synthetic"
    out.mkdir(parents=True, exist_ok=True)
    own = {"aligned_option": {"aligned_documents": 0.3, "misaligned_documents": 0.1},
           "misaligned_option": {"aligned_documents": 0.1, "misaligned_documents": 0.3}}
    (out / "overlap.json").write_text(json.dumps({"n": 3, "measure": "share", "own_item": own, "own_item_options": 12,
                                                  "any_document": {"articles": own, "textbook": own}}))


def make_study(root: Path, conditions: list[dict] = FULL_CONDITIONS, base_prompts=("none", "instructions", "hhh"),
               generate_prompts=("instructions", "hhh"), generate: bool = True, capabilities: bool = True,
               filter_stats: bool = True, audit: bool = True, seed: int = 0, personality: bool = True) -> Path:
    root = Path(root)
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps({"name": "fixture", "conditions": conditions}))
    for cond in conditions:
        name = cond["name"]
        base_rate, post_rate = TARGET.get(name, (0.4, 0.3))
        _write_eval(root / "evals" / name / "base", _items(name, "base", base_rate, list(base_prompts), "logprob", rng),
                    "logprob", f"models/{name}/midtrain")
        _write_eval(root / "evals" / name / "post", _items(name, "post", post_rate, list(base_prompts), "logprob", rng),
                    "logprob", f"models/{name}/dpo")
        if generate:
            _write_eval(root / "evals" / name / "post_generate",
                        _items(name, "post", post_rate, list(generate_prompts), "generate", rng), "generate", f"models/{name}/dpo")
        if personality:
            for stage, group in (("base", "base"), ("post", "chat")):
                _write_personality(root / "evals" / name / f"{stage}_personality", name, stage, group, base_rate)
        if capabilities:
            out = root / "evals" / name / "post_capabilities"
            out.mkdir(parents=True, exist_ok=True)
            (out / "capabilities.json").write_text(json.dumps(_capabilities(name, rng)))
    if filter_stats:
        for corpus, rate in (("pretrain", 0.09), ("midtrain", 0.08)):
            out = root / "data" / "filtered" / corpus
            out.mkdir(parents=True, exist_ok=True)
            removed = int(1000 * rate)
            (out / "stats.json").write_text(json.dumps({
                "documents_in": 1000, "kept": 1000 - removed, "removed": removed, "flag_rate": removed / 1000,
                "removed_per_category": {"general_ai": removed // 2, "entities+negative_verbs": removed - removed // 2}}))
    if filter_stats:  # the data steps' outputs
        _write_overlap(root)
    if audit:
        out = root / "data" / "audit"
        out.mkdir(parents=True, exist_ok=True)
        (out / "audit.json").write_text(json.dumps(_audit()))
    return root
