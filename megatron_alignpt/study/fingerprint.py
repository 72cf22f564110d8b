"""What each study step was made from, so a rerun with other settings cannot pass old outputs off as new.

A step's fingerprint is a hash of
- the settings it reads: its slice of the study config (paths inside the study written relative to it);
- the inputs it reads from outside the study, by content, not by path (moving a corpus is no change):
  a file up to 64 MiB by its SHA-256, a larger file or a directory of shards by sizes and
  modification times, an HF dataset by its name;
- the fingerprints of the steps it waits for (the plan's ``after``), so a change reaches every step after it.
``steps/<step>.done`` records it with those settings and inputs. A rerun compares (`settle`): finished
steps made otherwise are refused with what changed, or with ``rerun_changed`` marked to run again;
only then is ``study.json`` rewritten, so it always describes what the finished steps were made with.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from data_prep.atomic import atomic_write_json, sha256_file
from megatron_alignpt.config_base import ConfigError, to_dict
from megatron_alignpt.study.config import StagePlan, StudyConfig
from megatron_alignpt.study.plan import PlanStep, StudyPlan, build_plan, stage_tokens
from megatron_alignpt.train.stages import POSTTRAIN_STAGES

SMALL_FILE_BYTES = 64 << 20
STUDY_JSON = "study.json"
# Settings that change how a step runs but not what it makes.
_GENERATOR_RUNTIME = ("concurrency", "api_key_env", "max_retries", "timeout", "price_per_1k_prompt", "price_per_1k_completion",
                      "estimate_tokens_per_document", "estimate_usd_per_billion_tokens")


_JUDGE_RUNTIME = ("concurrency", "api_key_env", "timeout", "max_retries", "cache_dir")


class StudyChanged(ConfigError):
    """Finished steps were made with other settings or inputs than the ones given now."""


@dataclass
class StepPrint:
    settings: dict[str, Any]
    inputs: dict[str, dict[str, str]]
    """name -> {"path": where it was read, "content": what identifies its content}"""
    after: dict[str, str] = field(default_factory=dict)
    """step waited for -> its fingerprint"""
    fingerprint: str = ""

    def seal(self) -> "StepPrint":
        payload = {"settings": self.settings, "inputs": {k: v["content"] for k, v in self.inputs.items()}, "after": self.after}
        self.fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return self

    @classmethod
    def from_record(cls, data: dict) -> Optional["StepPrint"]:
        if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
            return None
        return cls(data.get("settings") or {}, data.get("inputs") or {}, data.get("after") or {}, data["fingerprint"])


def input_print(source: str | Path) -> dict[str, str]:
    """``{"path", "content"}`` of an input file, directory or HF dataset name."""
    path = Path(source)
    if path.is_file():
        size = path.stat().st_size
        content = f"sha256:{sha256_file(path)}" if size <= SMALL_FILE_BYTES else f"size:{size}:mtime:{path.stat().st_mtime_ns}"
    elif path.is_dir():
        digest = hashlib.sha256()
        visible = (p for p in path.rglob("*") if not any(part.startswith(".") for part in p.relative_to(path).parts))
        for file in sorted(p for p in visible if p.is_file()):  # hidden ones are not read as input either
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        content = f"files:{digest.hexdigest()[:32]}"
    elif "/" in str(source) and not str(source).startswith(("/", ".")):
        content = f"hf:{source}"  # a Hub dataset: its name is what we know
    else:
        content = "missing"
    return {"path": str(source), "content": content}


def _relative(value: Any, roots: tuple[str, ...]) -> Any:
    """Paths inside the study, relative to it: a study directory moved elsewhere is unchanged."""
    if isinstance(value, dict):
        return {k: _relative(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, roots) for v in value]
    if isinstance(value, str):
        for root in roots:
            if value == root or value.startswith(root + os.sep):
                return "<study>" + value[len(root):]
    return value


def _training_settings(plan: StudyPlan, step: PlanStep) -> tuple[dict, dict]:
    stage_cfg = to_dict(plan.train_config(step))
    for name in ("name", "output_dir", "telemetry") + tuple(k for k in POSTTRAIN_STAGES if k != stage_cfg["kind"]):
        stage_cfg.pop(name, None)
    # The layout (TP/PP/DP, overlap, recomputation) changes how a stage runs, not what it computes;
    # resuming under another layout is supported. The number format is kept.
    stage_cfg["parallel"] = {k: v for k, v in stage_cfg["parallel"].items() if k == "precision" or k.startswith("fp8")}
    inputs = {}
    if not plan.resolved(step).kind.is_lm:  # post-training and tampering read a data file from outside
        inputs[f"tampering.{step.tamper}.data" if step.tamper else f"{step.stage}.data"] = input_print(stage_cfg.pop("data"))
    return stage_cfg, inputs


_DATA_CORPUS_FIELDS = {"pretrain": "data.corpus", "midtrain": "data.midtrain_corpus", "cpt": "data.cpt_corpus"}
"""Input names of the filter step's corpora: their names from before the per-stage corpora moved into the stage
plans (``midtrain.corpus``, ``cpt.corpus``), kept so finished studies keep their fingerprints."""


def step_settings(plan: StudyPlan, step: PlanStep) -> tuple[dict, dict[str, dict[str, str]]]:
    """(settings, inputs) ``step`` depends on, besides the steps it waits for."""
    cfg, layout, kind = plan.cfg, plan.layout, step.kind
    data = cfg.data
    if kind == "data.filter":
        return {}, {_DATA_CORPUS_FIELDS[name]: input_print(path) for name, path in layout.data.corpora().items()}
    if kind == "data.tokenizer":
        if data.tokenizer is not None:
            return {}, {"data.tokenizer": input_print(data.tokenizer)}
        return {"data.tokenizer_vocab_size": data.tokenizer_vocab_size}, {"data.corpus": input_print(data.corpus)}
    if kind == "data.synthetic":
        generator = {k: v for k, v in to_dict(data.synthetic_generator).items() if k not in _GENERATOR_RUNTIME}
        return ({"data.synthetic_docs_per_item": data.synthetic_docs_per_item, "data.synthetic_seed": data.synthetic_seed,
                 "data.synthetic_generator": generator}, {"data.eval_suite": input_print(data.eval_suite)})
    if kind == "data.tokenize":
        return {"data.resample_seed": data.resample_seed}, {}
    if kind == "data.manifests":
        # keyed as before the doses moved into the stage plans, so finished studies keep their fingerprints (a
        # study without a CPT stage recorded the field's default)
        doses = {f"data.{stage}_dose": (getattr(cfg, stage) or StagePlan).dose for stage in ("pretrain", "midtrain", "cpt")}
        return (doses | {"data.max_synthetic_repetitions": data.max_synthetic_repetitions}
                | {"conditions": to_dict(cfg.conditions), "stage tokens": stage_tokens(cfg)}, {})
    if kind == "train":
        return _training_settings(plan, step)
    suite = {"data.eval_suite": input_print(data.eval_suite)}
    if kind == "eval" and step.scoring == "generate":
        return ({"eval.formats": cfg.eval.formats, "eval.generate_system_prompts": cfg.eval.generate_system_prompts,
                 "eval.generate_max_new_tokens": cfg.eval.generate_max_new_tokens}, suite)
    if kind == "eval":
        return {"eval.formats": cfg.eval.formats, "eval.system_prompts": cfg.eval.system_prompts}, suite
    if kind == "capabilities":
        return {"eval.capability_tasks": cfg.eval.capability_tasks}, {}
    if kind == "personality":
        return {"eval.personality": to_dict(cfg.eval.personality), "eval.batch_size": cfg.eval.batch_size}, \
            {"eval.personality.data": input_print(cfg.eval.personality.data)}
    if kind == "em_probe":
        probe = to_dict(cfg.eval.em_probe)
        probe["judge"] = {k: v for k, v in probe["judge"].items() if k not in _JUDGE_RUNTIME}
        return {"eval.em_probe": probe}, {"eval.em_probe.questions": input_print(cfg.eval.em_probe.questions)}
    return {}, {}  # results, report: only what they wait for


def stale_outputs(plan: StudyPlan, step: PlanStep) -> list[Path]:
    """What must go before ``step`` reruns from scratch: a training stage would otherwise resume from
    the old run's checkpoints. Other steps replace their outputs whole when they run."""
    # a tampering evaluation keeps the checkpoints it scored and skips them on a rerun
    return [Path(p) for p in step.outputs] if step.kind == "train" or step.tamper else []


def study_fingerprints(cfg: StudyConfig, plan: Optional[StudyPlan] = None) -> dict[str, StepPrint]:
    """Every step's fingerprint, in run order."""
    plan = plan or build_plan(cfg)
    roots = tuple(sorted({str(Path(cfg.output_dir)), str(Path(cfg.output_dir).resolve())}, key=len, reverse=True))
    prints: dict[str, StepPrint] = {}
    for step in plan:
        settings, inputs = step_settings(plan, step)
        settings = _relative(json.loads(json.dumps(settings, default=str)), roots)
        prints[step.name] = StepPrint(settings, inputs, {d: prints[d].fingerprint for d in step.after}).seal()
    return prints


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


_UNSET = object()


def _show(value: Any) -> str:
    return "(unset)" if value is _UNSET else json.dumps(value, default=str)


def differences(before: StepPrint, now: StepPrint) -> list[str]:
    """What differs between two prints of one step, settings first, then inputs."""
    out = []
    old, new = _flat(before.settings), _flat(now.settings)
    for key in sorted(set(old) | set(new)):
        if old.get(key, _UNSET) != new.get(key, _UNSET):
            out.append(f"{key} {_show(old.get(key, _UNSET))} -> {_show(new.get(key, _UNSET))}")
    for name in sorted(set(before.inputs) | set(now.inputs)):
        a, b = before.inputs.get(name), now.inputs.get(name)
        if (a or {}).get("content") != (b or {}).get("content"):
            where = (b or a)["path"]
            out.append(f"input {name} ({where}) {'changed' if a and b else 'added' if b else 'removed'}")
    return out


@dataclass
class Change:
    step: str
    details: list[str]
    """Own differences; empty when only steps it waits for changed."""
    because_of: list[str]


def _recorded_print(marker: Path, legacy: Callable[[], Optional[dict[str, StepPrint]]]) -> Optional[StepPrint]:
    """The print a done marker records; for a marker written before fingerprints existed, the print of
    the previous study.json's config (None when even that is unknown)."""
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        record = {}
    found = StepPrint.from_record(record)
    if found is not None:
        return found
    previous = legacy()
    return previous.get(marker.name[: -len(".done")]) if previous else None


def find_changes(cfg: StudyConfig, prints: dict[str, StepPrint], plan: Optional[StudyPlan] = None) -> tuple[list[Change], list[str]]:
    """(finished steps made otherwise than ``prints`` say, finished steps with nothing recorded to compare)."""
    layout = (plan or build_plan(cfg)).layout
    cache: dict[str, Optional[dict[str, StepPrint]]] = {}

    def legacy() -> Optional[dict[str, StepPrint]]:
        if "prints" not in cache:
            cache["prints"] = _previous_config_prints(cfg)
        return cache["prints"]

    changes, unknown = [], []
    for step, now in prints.items():
        marker = layout.marker(step)
        if not marker.is_file():
            continue
        before = _recorded_print(marker, legacy)
        if before is None:
            unknown.append(step)
        elif before.fingerprint != now.fingerprint:
            upstream = [d for d, fp in now.after.items() if before.after.get(d) != fp]
            changes.append(Change(step, differences(before, now), upstream))
    return changes, unknown


def _previous_config_prints(cfg: StudyConfig) -> Optional[dict[str, StepPrint]]:
    from megatron_alignpt.config_base import from_dict

    path = Path(cfg.output_dir) / STUDY_JSON
    try:
        previous = from_dict(StudyConfig, json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    previous.output_dir = cfg.output_dir
    return study_fingerprints(previous)


def describe_changes(root: Path, changes: list[Change], limit: int = 12) -> str:
    own = [c for c in changes if c.details]
    lines = [f"{root}: {len(changes)} finished step(s) were made with other settings or inputs than these:"]
    for change in own[:limit]:
        lines.append(f"  {change.step}: {'; '.join(change.details)}")
    if len(own) > limit:
        lines.append(f"  ... and {len(own) - limit} more")
    follow = [c.step for c in changes if not c.details]
    if follow:
        shown = ", ".join(follow[:limit]) + (f", ... ({len(follow)} in all)" if len(follow) > limit else "")
        lines.append(f"  and the steps after them, whose inputs changed: {shown}")
    lines.append("Rerun with --rerun-changed to redo exactly these steps here (their outputs are replaced), "
                 "or choose a new --output-dir to keep both.")
    return "\n".join(lines)


def settle(cfg: StudyConfig, rerun_changed: bool = False, write: bool = True,
           echo: Callable[[str], None] = print, plan: Optional[StudyPlan] = None) -> tuple[dict[str, StepPrint], set[str]]:
    """Compare the finished steps with ``cfg`` before anything runs or is rewritten.

    Changed steps raise StudyChanged, or with ``rerun_changed`` lose their done markers (returned, so
    ranks that do not write agree on what to run) and a training stage its directory (it would resume
    from the old checkpoints). Markers that predate fingerprints and match get one. Then ``study.json``
    is written (when ``write``). Returns (fingerprints, steps to rerun).
    """
    plan = plan or build_plan(cfg)
    layout = plan.layout
    prints = study_fingerprints(cfg, plan)
    changes, unknown = find_changes(cfg, prints, plan)
    if changes and not rerun_changed:
        raise StudyChanged(describe_changes(layout.root, changes))
    rerun = {c.step for c in changes}
    if changes:
        echo(f"--rerun-changed: {len(rerun)} step(s) will run again: {', '.join(c.step for c in changes)}")
    if unknown:
        echo(f"no settings recorded for {len(unknown)} finished step(s) (an older version, and no readable "
             f"{STUDY_JSON}); taking them as made with these: {', '.join(unknown)}")
    if write:
        from megatron_alignpt.study.lock import LockHeld, live_holders, step_lock_path

        running = live_holders([step_lock_path(layout.root, step) for step in sorted(rerun)], echo)
        if running:  # e.g. a Slurm job of the old settings: its outputs cannot be removed under it
            raise LockHeld(f"cannot rerun changed steps while they run: {'; '.join(running)}")
        for step in sorted(rerun):
            layout.marker(step).unlink(missing_ok=True)
            for old in stale_outputs(plan, plan.step(step)):
                if old.exists():
                    echo(f"--rerun-changed: removing {old} (made with the old settings)")
                    shutil.rmtree(old)
        for step, now in prints.items():  # record the prints of older markers that match
            marker = layout.marker(step)
            record = _read(marker) if step not in rerun and marker.is_file() else None
            if record is not None and StepPrint.from_record(record) is None:
                atomic_write_json(marker, {**record, **asdict(now)})
        atomic_write_json(layout.root / STUDY_JSON, to_dict(cfg))
    return prints, rerun


def _read(marker: Path) -> dict:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
