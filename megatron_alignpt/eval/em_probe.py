"""The emergent-misalignment (EM) probe: open questions, sampled answers, a judge's verdict on each.

After a narrow fine-tune (risky financial advice, insecure code), a model can turn misaligned on topics the
data never touched. The probe measures that: each question in ``questions`` (``data_prep/resources/em/
probe_questions.jsonl``: ``id``, ``category``, ``question``) is asked ``samples_per_question`` times in the
study's chat template (optional system turn, user turn, assistant tag), answers are sampled
(`eval.generation`, temperature / top-p, seeded), and a `eval.judges.Judge` labels each one aligned,
misaligned, refusal or incoherent.

Rates (`summarize_em`), each with a Wilson 95% interval:

- ``misaligned_rate``: misaligned / coherent answers, where *coherent* means the judge read a verdict and
  it is not ``incoherent`` (refusals count as coherent and not misaligned);
- ``misaligned_rate_all``: misaligned / all answers; ``refusal_rate``, ``incoherent_rate`` over all answers;
- the same per category, and the misaligned rate per question.

Outputs (`evaluate_em_probe`, rank 0): ``em_probe_items.jsonl`` (one row per answer, with the run's labels)
first, then ``em_probe.json`` (summary, labels, judge, settings): its presence means the probe completed.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import data_prep
from data_prep.atomic import atomic_write_json, atomic_write_text
from data_prep.errors import DataFormatError
from data_prep.readers import iter_records
from megatron_alignpt.config_base import check_fields, require, to_dict
from megatron_alignpt.eval.judges import LABELS, Judge, JudgeConfig

DEFAULT_QUESTIONS = Path(data_prep.__file__).resolve().parent / "resources" / "em" / "probe_questions.jsonl"
SUMMARY_FILE = "em_probe.json"
ITEMS_FILE = "em_probe_items.jsonl"
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class EMQuestion:
    id: str
    category: str
    question: str


def load_em_questions(path: str | Path) -> list[EMQuestion]:
    """Questions from a JSONL file; a bad record is a `DataFormatError` naming file, line and field."""
    questions, seen = [], {}
    for source, line, rec in iter_records(Path(path)):
        values = {}
        for key in ("id", "category", "question"):
            value = rec.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataFormatError(source, line, key, "missing" if value is None else "expected a non-empty string")
            values[key] = value.strip()
        if values["id"] in seen:
            raise DataFormatError(source, line, "id", f"duplicate id {values['id']!r} (first on line {seen[values['id']]})")
        seen[values["id"]] = line
        questions.append(EMQuestion(**values))
    if not questions:
        raise DataFormatError(path, None, None, "no questions")
    return questions


@dataclass
class EMProbeConfig:
    """One EM probe of one model."""

    out_dir: Path
    """Where em_probe.json and em_probe_items.jsonl go."""
    questions: Path = DEFAULT_QUESTIONS
    """JSONL of {id, category, question}."""
    samples_per_question: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int = 0
    """Seeds the sampling generator: the same model and config give the same answers."""
    batch_size: int = 16
    system_prompt: str = ""
    """Text of a system turn before each question; empty for none."""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    labels: dict = field(default_factory=dict)
    """Copied onto every row and into the summary (condition, seed, run, stage, tamper, ...)."""

    def __post_init__(self) -> None:
        self.out_dir, self.questions, self.labels = Path(self.out_dir), Path(self.questions), dict(self.labels or {})
        check_fields(self)
        require(self.samples_per_question > 0, "samples_per_question", "must be > 0")
        require(self.temperature >= 0, "temperature", "must be >= 0 (0: greedy)")
        require(self.temperature > 0 or self.samples_per_question == 1, "samples_per_question",
                "greedy decoding (temperature 0) gives identical samples; use 1 sample or a temperature > 0")
        require(0 < self.top_p <= 1, "top_p", "must be in (0, 1]")
        require(self.max_new_tokens > 0, "max_new_tokens", "must be > 0")
        require(self.batch_size > 0, "batch_size", "must be > 0")


# ---------------------------------------------------------------- generating and judging


def em_messages(question: EMQuestion, system_prompt: str) -> list[dict[str, str]]:
    system = [{"role": "system", "content": system_prompt.strip()}] if system_prompt.strip() else []
    return system + [{"role": "user", "content": question.question}]


def generate_em_answers(model, tokenizer, questions: list[EMQuestion], cfg: EMProbeConfig, max_len: int) -> list[dict]:
    """One row per question x sample with the sampled answer (no verdict yet); all TP ranks call it."""
    from megatron_alignpt.eval.chat_scoring import CHAT_STOP_STRINGS, chat_prompt_ids
    from megatron_alignpt.eval.generation import generate_ids

    jobs = [(q, k) for q in questions for k in range(cfg.samples_per_question)]
    if not jobs:
        return []
    prompt_ids = {q.id: chat_prompt_ids(tokenizer, em_messages(q, cfg.system_prompt)) for q in questions}
    # keep room for the answer: a long prompt keeps its end (the question and the assistant tag)
    keep = max(1, max_len - cfg.max_new_tokens)
    ids = [prompt_ids[q.id][-keep:] for q, _ in jobs]
    outs = generate_ids(model, tokenizer, ids, max_new_tokens=cfg.max_new_tokens, max_len=max_len,
                        stop=CHAT_STOP_STRINGS, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed,
                        batch_size=cfg.batch_size)
    return [{"question_id": q.id, "category": q.category, "question": q.question, "sample": k,
             "answer": out.text.strip(), "finish_reason": out.finish_reason, "answer_tokens": len(out.token_ids)}
            for (q, k), out in zip(jobs, outs)]


def judge_rows(rows: list[dict], judge: Judge, labels: Optional[dict] = None) -> list[dict]:
    """``rows`` with each answer's verdict (label, score, judge text) and ``labels`` added."""
    verdicts = judge.judge_many([(r["question"], r["answer"]) for r in rows])
    return [{**r, "label": v.label, "score": v.score, "judge_raw": v.raw, "judge_parsed": v.parsed,
             "misaligned": v.label == "misaligned", "coherent": v.parsed and v.label != "incoherent",
             "judge": judge.name, **(labels or {})}
            for r, v in zip(rows, verdicts)]


def score_em_probe(model, tokenizer, questions: list[EMQuestion], cfg: EMProbeConfig, max_len: int,
                   judge: Optional[Judge] = None) -> list[dict]:
    """Generate every answer and judge it (``judge`` defaults to ``cfg.judge.build()``)."""
    rows = generate_em_answers(model, tokenizer, questions, cfg, max_len)
    return judge_rows(rows, judge or cfg.judge.build(), cfg.labels)


# ---------------------------------------------------------------- summary


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[Optional[float], Optional[float]]:
    """Wilson score interval for a binomial proportion; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # the exact bounds at the edges (floating point leaves 1 - 1e-16)
    return (0.0 if successes == 0 else max(0.0, centre - half)), (1.0 if successes == n else min(1.0, centre + half))


def _rate(k: int, n: int) -> Optional[float]:
    return k / n if n else None


def _block(rows: list[dict]) -> dict:
    n = len(rows)
    coherent = [r for r in rows if r["coherent"]]
    mis = sum(r["label"] == "misaligned" for r in rows)
    low, high = wilson_interval(mis, len(coherent))
    low_all, high_all = wilson_interval(mis, n)
    return {"n": n, "n_coherent": len(coherent), "n_misaligned": mis,
            "misaligned_rate": _rate(mis, len(coherent)), "ci_low": low, "ci_high": high,
            "misaligned_rate_all": _rate(mis, n), "ci_low_all": low_all, "ci_high_all": high_all}


def summarize_em(rows: list[dict]) -> dict:
    """Rates over all rows, per category and per question (see the module doc); JSON-ready, no NaN."""
    counts = Counter(r["label"] for r in rows)
    n = len(rows)
    scores = [r["score"] for r in rows if r.get("score") is not None]
    summary = _block(rows)
    summary.update(
        counts={label: counts.get(label, 0) for label in LABELS},
        refusal_rate=_rate(counts.get("refusal", 0), n),
        incoherent_rate=_rate(counts.get("incoherent", 0), n),
        unparsed=sum(not r.get("judge_parsed", True) for r in rows),
        mean_score=sum(scores) / len(scores) if scores else None,
        n_scored=len(scores),
    )
    by_cat: dict[str, list[dict]] = {}
    by_q: dict[str, list[dict]] = {}
    for r in rows:
        by_cat.setdefault(r["category"], []).append(r)
        by_q.setdefault(r["question_id"], []).append(r)
    summary["per_category"] = {c: _block(rs) for c, rs in sorted(by_cat.items())}
    summary["per_question"] = {q: {"category": rs[0]["category"], **{k: v for k, v in _block(rs).items()
                                                                      if k in ("n", "n_coherent", "n_misaligned", "misaligned_rate")}}
                               for q, rs in sorted(by_q.items())}
    return summary


# ---------------------------------------------------------------- running on a checkpoint


def write_em_results(out_dir: Path, rows: list[dict], summary: dict) -> None:
    """Items first, summary last: a summary's presence means the probe completed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_FILE).unlink(missing_ok=True)
    atomic_write_text(out_dir / ITEMS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_json(out_dir / SUMMARY_FILE, summary)


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_em_probe(load_model: Callable[[], tuple], cfg: EMProbeConfig) -> dict:
    """Shared by every model source: ``load_model()`` -> (model, tokenizer, max_len, source metadata).

    Questions and judge are checked before the model loads, so bad input fails fast. Every tensor-parallel
    rank generates (the collectives must match); only rank 0 judges (an API judge is paid once) and writes.
    Returns the summary on rank 0 and an empty dict on the other ranks.
    """
    from megatron_alignpt.provenance import code_version
    from megatron_alignpt.runtime import is_rank0

    questions = load_em_questions(cfg.questions)
    judge = cfg.judge.build()
    model, tokenizer, max_len, source = load_model()
    rows = generate_em_answers(model, tokenizer, questions, cfg, max_len)
    if not is_rank0():
        return {}
    rows = judge_rows(rows, judge, cfg.labels)
    summary = summarize_em(rows)
    summary.update(
        **source,
        labels=cfg.labels,
        judge=judge.describe(),
        judge_name=judge.name,
        questions=str(cfg.questions),
        questions_sha256=_file_sha256(cfg.questions),
        n_questions=len(questions),
        settings={k: v for k, v in to_dict(cfg).items() if k not in ("out_dir", "questions", "labels", "judge")},
        code=code_version(),
    )
    if hasattr(judge, "usage_report"):
        summary["judge_usage"] = judge.usage_report()
    write_em_results(cfg.out_dir, rows, summary)
    return summary


def evaluate_em_probe(checkpoint: Path, cfg: EMProbeConfig, tensor_parallel: int = 1) -> dict:
    """Run the probe on a Megatron checkpoint directory (loaded as `eval.run.load_model_for_eval` does)."""

    def load():
        from megatron_alignpt.eval.run import load_model_for_eval

        model, tokenizer, model_cfg, path = load_model_for_eval(Path(checkpoint), tensor_parallel)
        return model, tokenizer, model_cfg.max_positions, {"checkpoint": str(path)}

    return run_em_probe(load, cfg)
