"""The study's step plan: insertion stages (E2E / Mid / CPT), checkpoints shared between conditions with the
same lineage, stage token budgets for the manifests, and the config checks that guard them."""
import copy

import pytest

from megatron_alignpt.config_base import ConfigError, from_dict, to_dict
from megatron_alignpt.study.config import ConditionSpec, StudyConfig
from megatron_alignpt.study.plan import StudyLayout, build_plan, stage_tokens, step_graph
from recipes import get_recipe
from recipes.conditions import paper_suite_conditions


@pytest.fixture
def insertion():
    return get_recipe("tiny_cpu_insertion")()


def step_names(cfg):
    return build_plan(cfg).names


def stage_config(cfg, run, stage):
    return build_plan(cfg).stage_config(run, stage)


def test_inserts_synthetic_per_stage():
    table = {ins: [s for s in ("pretrain", "midtrain", "cpt") if ConditionSpec("x", synthetic="aligned", insertion=ins).inserts_synthetic(s)]
             for ins in ("e2e", "mid", "cpt")}
    assert table == {"e2e": ["pretrain", "midtrain"], "mid": ["midtrain"], "cpt": ["cpt"]}
    assert not ConditionSpec("plain").inserts_synthetic("pretrain")


def test_late_insertion_branches_off_the_unfiltered_model(insertion):
    names = step_names(insertion)
    # Mid and CPT conditions never repeat the unfiltered pretraining; CPT ones also reuse its midtraining.
    assert "align_mid.pretrain" not in names and "align_mid.midtrain" in names
    assert "align_cpt.pretrain" not in names and "align_cpt.midtrain" not in names and "align_cpt.cpt" in names
    # Only CPT conditions run a CPT stage; E2E ones go straight from midtraining to SFT.
    assert [n for n in names if n.endswith(".cpt")] == ["align_cpt.cpt", "misalign_cpt.cpt"]
    layout = StudyLayout(insertion)
    assert layout.stage_dir("align_cpt", "midtrain") == layout.stage_dir("unfiltered", "midtrain")
    assert layout.stage_dir("align_mid", "pretrain") == layout.stage_dir("unfiltered", "pretrain")
    assert layout.stage_dir("align_mid", "midtrain") != layout.stage_dir("unfiltered", "midtrain")
    # Post-training is never shared, even where the base checkpoint is.
    assert layout.stage_dir("align_cpt", "sft").parent.name == "align_cpt"


def test_stage_configs_chain_through_cpt(insertion):
    layout = StudyLayout(insertion)
    cpt = stage_config(insertion, "misalign_cpt", "cpt")
    assert cpt.kind == "pretrain" and cpt.init_from == layout.stage_dir("unfiltered", "midtrain")
    assert cpt.data == layout.data.manifest("misalign_cpt", "cpt")
    assert stage_config(insertion, "misalign_cpt", "sft").init_from == layout.stage_dir("misalign_cpt", "cpt")
    assert stage_config(insertion, "align_upsampled", "sft").init_from == layout.stage_dir("align_upsampled", "midtrain")


def test_eval_base_scores_the_last_pretraining_stage_and_the_graph_waits_for_it(insertion):
    graph = step_graph(insertion)
    assert graph["align_cpt.cpt"] == ["unfiltered.midtrain"]
    assert graph["align_mid.midtrain"] == ["unfiltered.pretrain"]
    assert graph["align_cpt.eval_base"] == graph["align_cpt.sft"] == ["align_cpt.cpt"]
    assert graph["align_mid.eval_post_generate"] == ["align_mid.dpo"]
    assert set(graph["results"]) >= {"align_cpt.eval_base", "align_cpt.eval_post", "align_cpt.eval_post_generate"}


def test_stage_tokens_cover_the_stages_any_condition_runs(insertion):
    tokens = stage_tokens(insertion)
    assert tokens == {"pretrain": 250 * 16 * 128, "midtrain": 60 * 8 * 256, "cpt": 30 * 8 * 256}
    assert "cpt" not in stage_tokens(get_recipe("tiny_cpu")())


def test_generate_pass_is_optional():
    cfg = get_recipe("tiny_cpu")()
    assert "align_upsampled.eval_post_generate" in step_names(cfg)
    cfg.eval.post_generate = False
    assert not any(n.endswith("eval_post_generate") for n in step_names(cfg))


def test_cpt_conditions_need_a_cpt_plan_and_dose():
    cfg = get_recipe("tiny_cpu_insertion")()
    cfg.cpt = None
    with pytest.raises(ConfigError, match="cpt"):
        cfg.__post_init__()
    cfg = get_recipe("tiny_cpu_insertion")()
    cfg.cpt.dose = 0.0
    with pytest.raises(ConfigError, match="cpt.dose"):
        cfg.__post_init__()
    with pytest.raises(ConfigError, match="insertion"):
        ConditionSpec("x", synthetic="aligned", insertion="late")


def test_cpt_sequence_length_is_checked():
    cfg = get_recipe("tiny_cpu_insertion")()
    cfg.cpt.seq_length = 4096
    with pytest.raises(ConfigError, match="cpt.seq_length"):
        cfg.__post_init__()


def test_study_config_round_trips_with_cpt(insertion):
    again = from_dict(StudyConfig, copy.deepcopy(to_dict(insertion)))
    assert again.cpt == insertion.cpt and again.conditions == insertion.conditions


def test_paper_suite_names_are_unique_and_cover_every_published_model():
    names = [c.name for c in paper_suite_conditions()]
    assert len(names) == len(set(names)) == 10
    assert {"align_mid", "align_cpt", "misalign_mid", "misalign_cpt", "filtered_align"} <= set(names)


def test_a_stage_can_override_the_study_layout():
    from megatron_alignpt.model.config import ParallelConfig

    cfg = get_recipe("tiny_cpu")()
    cfg.parallel = ParallelConfig(pipeline_parallel=2)
    with pytest.raises(ConfigError, match="dpo: .*pipeline_parallel=1"):  # DPO cannot pipeline
        cfg.__post_init__()
    cfg.dpo.parallel = ParallelConfig()
    cfg.__post_init__()
    assert stage_config(cfg, "unfiltered", "dpo").parallel.pipeline_parallel == 1
    assert stage_config(cfg, "unfiltered", "pretrain").parallel.pipeline_parallel == 2
    assert cfg.resolve_stage("dpo").parallel.pipeline_parallel == 1


def test_a_layout_that_cannot_split_the_model_fails_when_the_study_is_built():
    from megatron_alignpt.model.config import ParallelConfig

    cfg = get_recipe("tiny_cpu")()
    cfg.parallel = ParallelConfig(tensor_parallel=3)  # 4 heads
    with pytest.raises(ConfigError, match="pretrain: .*tensor_parallel"):
        cfg.__post_init__()


def test_slurm_data_parallel_counts_context_parallel_ranks():
    from megatron_alignpt.launch.site import SiteConfig
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.study.submit import step_resources

    cfg = get_recipe("paper_6p9b")()
    cfg.parallel = ParallelConfig(tensor_parallel=4, context_parallel=2, sequence_parallel=True, precision="bf16")
    site = SiteConfig(gpus_per_node=8)
    plan = build_plan(cfg)
    pretrain = plan.step("unfiltered.pretrain")
    # 32 nodes x 8 = 256 ranks / (TP 4 x CP 2) = DP 32: the 2048-sequence batch splits, 2 per micro-batch.
    assert step_resources(plan, pretrain, site, 32).nodes == 32
    # 192 = 3 x (2 x 32) splits over DP 32 (it would not over the DP 64 of a count that forgot CP) ...
    cfg.pretrain.schedule.global_batch_size = 192
    step_resources(plan, pretrain, site, 32)
    with pytest.raises(ConfigError, match="pretrain.schedule.global_batch_size"):  # ... nor over 64 nodes' DP 64
        step_resources(plan, pretrain, site, 64)


def test_capability_step_runs_after_dpo_and_records_unloadable_tasks(tmp_path):
    import json

    cfg = get_recipe("tiny_cpu")(tmp_path / "study")
    assert not any(n.endswith("eval_capabilities") for n in step_names(cfg))  # off unless asked for
    cfg.eval.capability_tasks = "no_such_task_anywhere"
    plan = build_plan(cfg)
    assert step_graph(cfg)["filtered.eval_capabilities"] == ["filtered.dpo"]
    assert "filtered.eval_capabilities" in step_graph(cfg)["results"]
    from megatron_alignpt.study.actions import run_step

    run_step(plan, plan.step("filtered.eval_capabilities"))  # the task cannot load: recorded, the study goes on
    note = json.loads((tmp_path / "study" / "evals" / "filtered" / "post_capabilities" / "unavailable.json").read_text())
    assert "no_such_task_anywhere" in note["reasons"]


def test_study_configs_build_without_torch_or_megatron():
    """Data nodes run the study's data steps from the same recipes, on an image without torch."""
    import subprocess
    import sys

    code = ("import sys; from recipes import get_recipe; get_recipe('paper_6p9b')(); get_recipe('tiny_cpu_insertion')(); "
            "print(sorted(m for m in ('torch', 'megatron') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
