"""The typed study plan: one table of step kinds, dependencies, resources, JSON and graph output, resolved
stages, both executors reading the same steps, and step fields that are never parsed back from names."""
import json

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.config_base import ConfigError, apply_overrides
from megatron_alignpt.launch.site import SiteConfig
from megatron_alignpt.study.actions import ACTIONS
from megatron_alignpt.study.config import ConditionSpec
from megatron_alignpt.study.plan import STEP_KINDS, StudyPlan, build_plan
from megatron_alignpt.study.submit import SlurmExecutor, study_dir
from megatron_alignpt.train.stages import LM_STAGES, POSTTRAIN_STAGES, STAGES
from recipes import get_recipe


@pytest.fixture
def tiny(tmp_path):
    return get_recipe("tiny_cpu")(tmp_path / "study")


def test_every_step_kind_has_an_action_and_every_step_a_known_kind(tiny):
    assert set(ACTIONS) == set(STEP_KINDS)
    robust = get_recipe("tiny_cpu_robustness")(tiny.output_dir)
    plan = build_plan(apply_overrides(robust, ["eval.capability_tasks=paper"]))
    assert {s.kind for s in plan} == set(STEP_KINDS)
    assert [k for k, v in STEP_KINDS.items() if v.optional] == ["capabilities"]
    assert STAGES == LM_STAGES + POSTTRAIN_STAGES == ("pretrain", "midtrain", "cpt", "sft", "dpo")


def test_tampering_steps_continue_the_post_trained_model_per_seed(tmp_path):
    cfg = get_recipe("tiny_cpu_robustness")(tmp_path / "study")
    plan = build_plan(cfg)
    train = plan.step("filtered.tamper_benign_seed3")
    assert (train.kind, train.stage, train.tamper, train.tamper_seed, train.after) == ("train", "tamper", "benign", 3, ("filtered.dpo",))
    stage = plan.train_config(train)
    sft = cfg.resolve_stage("sft")
    per_iteration = sft.schedule.global_batch_size * sft.seq_length
    assert stage.kind == "sft" and stage.init_from == plan.layout.stage_dir("filtered", "dpo")
    assert stage.schedule.seed == 3 and stage.schedule.train_iters == 24 and stage.schedule.save_interval == 8
    assert cfg.tamper_plan("benign").tokens == 24 * per_iteration and stage.optimizer == sft.plan.optimizer
    assert stage.output_dir == plan.layout.tamper_dir("filtered", "benign", 3) != plan.layout.tamper_dir("filtered", "benign", 2)
    scored = plan.step("filtered.tamper_benign_seed3.eval_cloze")
    assert (scored.kind, scored.when, scored.scoring, scored.after) == ("eval", "tamper", "cloze", (train.name,))
    labels = plan.tamper_eval_config(scored, 16, 16 * per_iteration).labels
    assert (labels["tamper"], labels["tamper_seed"], labels["tamper_tokens"], labels["stage"]) == ("benign", 3, 16 * per_iteration, "tamper")
    # only the EM fine-tune is probed after tampering; every post-trained model before it
    assert "filtered.tamper_em_finance_seed1.em_probe" in plan.names and "filtered.tamper_benign_seed1.em_probe" not in plan.names
    assert plan.step("filtered.em_probe_post").stage == "dpo"
    assert set(plan.step("results").after) >= {"filtered.tamper_benign_seed3.eval_cloze", "filtered.personality_base"}
    with pytest.raises(ConfigError, match=r"tampering\[x\].eval_every_tokens"):
        apply_overrides(cfg, ['tampering=[{"name": "x", "data": "d.jsonl", "tokens": 10, "eval_every_tokens": 20}]'])


def test_steps_carry_their_run_stage_and_scoring(tiny):
    plan = build_plan(tiny)
    step = plan.step("align_upsampled.eval_base_cloze")
    assert (step.kind, step.run, step.condition, step.stage, step.when, step.scoring) == \
        ("eval", "align_upsampled", "align_upsampled", "midtrain", "base", "cloze")
    assert step.outputs == (str(plan.layout.eval_dir("align_upsampled", "base_cloze")),)
    train = plan.step("filtered.dpo")
    assert (train.kind, train.stage, train.after) == ("train", "dpo", ("filtered.sft",))
    assert train.resources.gpus == 1 and train.outputs == (str(plan.layout.stage_dir("filtered", "dpo")),)
    assert plan.step("data.filter").resources.tasks == 1 and plan.step("data.filter").resources.gpus == 0
    assert plan.step("report").after == ("results",)
    with pytest.raises(ConfigError, match="not a step"):
        plan.step("filtered.pretrian")


def test_dependencies_come_before_their_dependents(tiny):
    plan = build_plan(get_recipe("tiny_cpu_insertion")(tiny.output_dir))
    seen = set()
    for step in plan:
        assert set(step.after) <= seen, step.name
        seen.add(step.name)
    assert plan.step("align_cpt.cpt").after == ("unfiltered.midtrain",)


def test_resolve_stage_is_the_one_place_a_stage_model_is_worked_out():
    cfg = get_recipe("tiny_cpu_insertion")()
    mid = cfg.resolve_stage("midtrain")
    assert mid.model.seq_length == cfg.midtrain.seq_length != cfg.model.seq_length
    assert mid.model.max_position_embeddings == cfg.model.max_positions
    assert mid.tokens == 60 * 8 * 256 and mid.kind.continues and mid.kind.is_lm
    assert cfg.resolve_stage("pretrain").model.seq_length == cfg.model.seq_length
    assert cfg.resolve_stage("dpo").parallel == cfg.parallel and cfg.resolve_stage("sft").kind.objective == "sft"
    plan = build_plan(cfg)
    assert plan.stage_config("align_mid", "midtrain").model == mid.model
    cfg.cpt = None
    with pytest.raises(ConfigError, match="no cpt stage plan"):
        cfg.resolve_stage("cpt")


def test_local_and_slurm_executors_run_the_same_steps(tiny):
    cfg = get_recipe("paper_6p9b")(tiny.output_dir)
    cfg.output_dir = study_dir(cfg)
    plan = build_plan(cfg)
    jobs = SlurmExecutor(plan, "paper_6p9b", [], SiteConfig(gpus_per_node=8), nodes=32).jobs()
    assert [j.step.name for j in jobs] == plan.names
    assert [list(j.waits_for) for j in jobs] == [list(s.after) for s in plan]
    # data jobs and training jobs come from the same plan
    assert {j.resources.kind for j in jobs} == {"cpu", "train", "eval"}
    assert all(f"--only {j.step.name}" in j.script for j in jobs)


@pytest.mark.parametrize("odd", ["align.v2", "x_generate", "x@seed7", "a.eval_base", "data"])
def test_condition_names_are_never_parsed(odd, tmp_path):
    cfg = get_recipe("tiny_cpu")(tmp_path / "study")
    cfg.conditions.append(ConditionSpec(odd, base="filtered", synthetic="misaligned"))  # a lineage of its own
    cfg.seeds = [3]
    plan = build_plan(cfg)
    run = f"{odd}@seed3"
    mine = [s for s in plan if s.condition == odd]
    assert {s.run for s in mine} == {run} and all(s.seed == 3 for s in mine)
    pre = plan.step(f"{run}.pretrain")
    assert pre.stage == "pretrain" and plan.stage_config(run, "pretrain").data == plan.layout.data.manifest(odd, "pretrain")
    generate = plan.step(f"{run}.eval_post_generate")
    assert (generate.stage, generate.when, generate.scoring) == ("dpo", "post", "generate")
    assert plan.selects(pre, [odd]) and plan.selects(pre, [run]) and not plan.selects(plan.step("results"), [odd])
    assert f"{run}.eval_post_generate" in plan.step("results").after
    res = SlurmExecutor(plan, "tiny_cpu", [], SiteConfig(gpus_per_node=1)).jobs()
    assert {j.resources.kind for j in res if j.step.run == run} == {"train", "eval"}
    from megatron_alignpt.study.status import study_status

    rows = {r.step: r for r in study_status(plan.layout.root, cfg)}
    assert rows[f"{run}.pretrain"].state == "pending"


def test_only_picks_steps_by_plan_fields(tiny):
    plan = build_plan(tiny)
    picked = lambda *only: [s.name for s in plan if plan.selects(s, list(only))]  # noqa: E731
    assert picked("filtered.eval_base") == ["filtered.eval_base"]
    assert picked("data.filter") == ["data.filter"] and len(picked("data.")) == 5
    assert set(picked("eval")) == {s.name for s in plan if s.kind == "eval"}
    assert set(picked("filtered")) == {s.name for s in plan if s.run == "filtered"}


def test_plan_json_and_graph(tiny, capsys):
    assert main(["study", "plan", "--recipe", "tiny_cpu", "--output-dir", str(tiny.output_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["kinds"]) == set(STEP_KINDS)
    steps = {s["name"]: s for s in data["steps"]}
    assert list(steps) == build_plan(tiny).names
    assert steps["unfiltered.sft"]["after"] == ["unfiltered.midtrain"] and steps["unfiltered.sft"]["resources"]["gpus"] == 1
    assert main(["study", "plan", "--recipe", "tiny_cpu", "--output-dir", str(tiny.output_dir)]) == 0
    text = capsys.readouterr().out
    graph = text.split("dependency graph:\n", 1)[1].splitlines()
    assert graph[0] == "data.filter" and graph[1] == "  data.tokenizer"
    assert "          filtered.pretrain  <- data.manifests" in graph  # depth 5, its dependency not the line above
    assert any(line.strip().startswith("results  <- ") for line in graph) and graph[-1].strip() == "report"


def test_plan_builds_without_torch_or_megatron():
    import subprocess
    import sys

    code = ("import sys; from recipes import get_recipe; from megatron_alignpt.study.plan import build_plan; "
            "build_plan(get_recipe('paper_6p9b')()).to_json(); "
            "import megatron_alignpt.launch.slurm, megatron_alignpt.study.submit, megatron_alignpt.study.status; "
            "print(sorted(m for m in ('torch', 'megatron') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_launch_does_not_import_study():
    import ast
    from pathlib import Path

    import megatron_alignpt.launch as launch

    for path in Path(launch.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("megatron_alignpt.study"), f"{path.name} imports {node.module}"


def test_plan_is_a_plain_value(tiny):
    plan = build_plan(tiny)
    assert isinstance(plan, StudyPlan) and len(plan) == len(plan.names) == len(set(plan.names))
