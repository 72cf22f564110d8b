"""Seeds and per-step scorings in a study plan: each condition trained once per seed, never sharing a
checkpoint across seeds, every stage of a run with its seed; eval steps per scoring; base-only studies."""
import pytest

from megatron_alignpt.config_base import ConfigError, from_dict, to_dict
from megatron_alignpt.study.config import ConditionSpec, StudyConfig
from megatron_alignpt.study.fingerprint import study_fingerprints
from megatron_alignpt.study.plan import StudyLayout, build_plan, step_graph, study_runs
from recipes import get_recipe


def names(cfg):
    return build_plan(cfg).names


def stage_config(cfg, run, stage):
    return build_plan(cfg).stage_config(run.name, stage)


def run_labels(cfg, run):
    return build_plan(cfg).run_labels(run.name)


@pytest.fixture
def seeded():
    cfg = get_recipe("tiny_cpu_insertion")()
    cfg.seeds = [1, 2]
    return cfg


def test_each_condition_trains_once_per_seed(seeded):
    steps = names(seeded)
    for seed in (1, 2):
        assert f"align_upsampled@seed{seed}.pretrain" in steps and f"align_upsampled@seed{seed}.eval_post" in steps
        assert f"align_mid@seed{seed}.pretrain" not in steps  # late insertion still branches off, within its seed
    assert not any(s.startswith("align_upsampled.") for s in steps)
    assert [r.name for r in study_runs(seeded)][:2] == ["unfiltered@seed1", "filtered@seed1"]


def test_runs_share_checkpoints_only_within_a_seed(seeded):
    layout = StudyLayout(seeded)
    assert layout.stage_dir("align_mid@seed2", "pretrain") == layout.stage_dir("unfiltered@seed2", "pretrain")
    assert layout.stage_dir("unfiltered@seed1", "pretrain") != layout.stage_dir("unfiltered@seed2", "pretrain")
    graph = step_graph(seeded)
    assert graph["align_cpt@seed2.cpt"] == ["unfiltered@seed2.midtrain"]
    assert graph["align_mid@seed1.midtrain"] == ["unfiltered@seed1.pretrain"]


def test_every_stage_of_a_run_uses_its_seed_and_its_condition_blend(seeded):
    layout = StudyLayout(seeded)
    for run in study_runs(seeded):
        if run.condition != "align_upsampled":
            continue
        for stage in ("pretrain", "midtrain", "sft", "dpo"):
            config = stage_config(seeded, run, stage)
            assert config.schedule.seed == run.seed, (run.name, stage)
        assert stage_config(seeded, run, "pretrain").data == layout.data.manifest("align_upsampled", "pretrain")
        assert run_labels(seeded, run) == {"condition": "align_upsampled", "seed": run.seed}


def test_without_seeds_runs_are_the_conditions_with_their_stage_seeds():
    cfg = get_recipe("tiny_cpu")()
    assert [r.name for r in study_runs(cfg)] == [c.name for c in cfg.conditions]
    layout = StudyLayout(cfg)
    run = study_runs(cfg)[0]
    assert stage_config(cfg, run, "pretrain").schedule.seed == cfg.pretrain.schedule.seed
    assert run_labels(cfg, run) == {"condition": "unfiltered", "seed": cfg.pretrain.schedule.seed}
    assert "unfiltered.pretrain" in names(cfg)


def test_adding_a_seed_keeps_the_finished_seed_s_steps(seeded):
    one = get_recipe("tiny_cpu_insertion")()
    one.seeds = [1]
    before, after = study_fingerprints(one), study_fingerprints(seeded)
    same = [s for s in before if s.split(".")[0].endswith("@seed1") or s.startswith("data.")]
    assert same and all(before[s].fingerprint == after[s].fingerprint for s in same)
    # the other seed trains other weights: its settings differ (the seed) from the first seed's
    assert after["unfiltered@seed1.pretrain"].settings != after["unfiltered@seed2.pretrain"].settings


def test_scorings_per_eval_step_and_base_only_studies():
    cfg = get_recipe("tiny_cpu_organism")()
    steps = names(cfg)
    assert cfg.seeds == [1, 2] and not cfg.posttrain
    assert "align_upsampled@seed1.eval_base_cloze" in steps and "align_upsampled@seed1.eval_base" in steps
    assert not any(s.endswith((".sft", ".dpo", ".eval_post", ".eval_post_generate")) for s in steps)
    graph = step_graph(cfg)
    assert graph["align_upsampled@seed2.eval_base_cloze"] == ["align_upsampled@seed2.midtrain"]
    assert "align_upsampled@seed2.eval_base_cloze" in graph["results"]
    prints = study_fingerprints(cfg)
    assert prints["align_upsampled@seed1.eval_base_cloze"].settings["eval.formats"] == cfg.eval.formats
    full = get_recipe("tiny_cpu")()
    full.eval.post_scorings = ["logprob", "cloze"]
    assert graph_has(full, "align_upsampled.eval_post_cloze", ["align_upsampled.dpo"])


def graph_has(cfg, step, waits_for) -> bool:
    return step_graph(cfg).get(step) == waits_for


def test_seed_and_scoring_settings_are_checked():
    cfg = to_dict(get_recipe("tiny_cpu")())
    with pytest.raises(ConfigError, match="seeds"):
        from_dict(StudyConfig, {**cfg, "seeds": [1, 1]})
    with pytest.raises(ConfigError, match="seeds"):
        from_dict(StudyConfig, {**cfg, "seeds": [-3]})
    with pytest.raises(ConfigError, match="base_scorings"):
        from_dict(StudyConfig, {**cfg, "eval": {**cfg["eval"], "base_scorings": ["generate"]}})
    with pytest.raises(ConfigError, match="base_scorings"):
        from_dict(StudyConfig, {**cfg, "eval": {**cfg["eval"], "base_scorings": []}})
    # nothing parses run names back: a condition named like another one's seed run is its own run
    odd = from_dict(StudyConfig, {**cfg, "seeds": [1], "conditions": cfg["conditions"] + [{"name": "filtered@seed1"}]})
    assert {"filtered@seed1", "filtered@seed1@seed1"} <= {r.name for r in study_runs(odd)}
    with pytest.raises(ConfigError, match="conditions"):
        ConditionSpec("align/seed1")
    again = from_dict(StudyConfig, {**cfg, "seeds": [3, 4]})  # study.json round trip
    assert again.seeds == [3, 4] and to_dict(again)["seeds"] == [3, 4]


def test_only_picks_a_step_by_its_full_name_and_others_by_prefix():
    plan = build_plan(get_recipe("tiny_cpu")())

    def selected(name, only, _steps=None):
        return plan.selects(plan.step(name), only)

    steps = None
    assert selected("align_upsampled.eval_base", ["align_upsampled.eval_base"], steps)
    assert not selected("align_upsampled.eval_base_cloze", ["align_upsampled.eval_base"], steps)
    assert not selected("align_upsampled.eval_post_generate", ["align_upsampled.eval_post"], steps)
    assert selected("align_upsampled.eval_base_cloze", ["align_upsampled"], steps)
    assert selected("data.filter", ["data."], steps) and not selected("unfiltered.pretrain", ["data."], steps)
