"""Parallel/precision layout: every validation rule's message, and the mapping onto megatron's configs."""
import dataclasses
import json

import pytest
import torch

from megatron_alignpt.config_base import ConfigError, from_dict, to_dict
from megatron_alignpt.model.config import FusionConfig, ModelConfig, ParallelConfig, RecomputeConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig
from recipes.pythia_sizes import pythia_model


def model(**kw) -> ModelConfig:
    base = dict(num_layers=8, hidden_size=256, num_attention_heads=8, seq_length=1024, layer_impl="te")
    return ModelConfig(**{**base, **kw})


def rejects(match: str, build=None, check=None):
    with pytest.raises(ConfigError, match=match) as err:
        parallel = build() if build else None
        if check:
            check(parallel)
    return str(err.value)


@pytest.mark.parametrize(
    "kwargs, field, says",
    [
        ({"tensor_parallel": 0}, "parallel.tensor_parallel", "integer >= 1"),
        ({"virtual_pipeline": 2}, "parallel.virtual_pipeline", "set pipeline_parallel > 1"),
        ({"sequence_parallel": True}, "parallel.sequence_parallel", "set tensor_parallel > 1"),
        ({"overlap_param_gather": True}, "parallel.overlap_param_gather", "set distributed_optimizer=true"),
        ({"precision": "fp16"}, "parallel.precision", "use fp32, bf16 or fp8"),
        ({"fp8_recipe": "tensorwise"}, "parallel.fp8_recipe", "use delayed or current"),
        ({"fp8_format": "e5m2"}, "parallel.fp8_format", "use hybrid or e4m3"),
    ],
)
def test_layout_rules_without_a_model(kwargs, field, says):
    msg = rejects(says, lambda: ParallelConfig(**kwargs))
    assert msg.startswith(field)


@pytest.mark.parametrize(
    "kwargs, field, says",
    [
        ({"granularity": "partial"}, "parallel.recompute.granularity", "use none, selective or full"),
        ({"method": "random"}, "parallel.recompute.method", "use uniform or block"),
        ({"num_layers": 0}, "parallel.recompute.num_layers", "must be >= 1"),
        ({"granularity": "selective", "modules": ("core_attn", "moe")}, "parallel.recompute.modules", r"\['moe'\]"),
    ],
)
def test_recompute_rules(kwargs, field, says):
    msg = rejects(says, lambda: RecomputeConfig(**kwargs))
    assert msg.startswith(field)


@pytest.mark.parametrize(
    "parallel, model_kw, field, says",
    [
        (dict(tensor_parallel=3), {}, "parallel.tensor_parallel", "num_attention_heads=8 is not divisible by tensor_parallel=3"),
        (dict(pipeline_parallel=3), {}, "parallel.pipeline_parallel", r"num_layers=8 is not divisible by .* = 3"),
        (dict(pipeline_parallel=2, virtual_pipeline=3), {}, "parallel.virtual_pipeline", r"2 x 3 = 6"),
        (dict(context_parallel=2), {"layer_impl": "sdpa"}, "parallel.context_parallel", "set model.layer_impl=te"),
        (dict(context_parallel=4), {"seq_length": 1020}, "parallel.context_parallel", "divisible by 2 x context_parallel = 8"),
        (dict(tensor_parallel=8, sequence_parallel=True), {"seq_length": 1020}, "parallel.sequence_parallel",
         "divisible by tensor_parallel = 8"),
        (dict(tensor_parallel=2, sequence_parallel=True, context_parallel=2), {"seq_length": 1028},
         "parallel.sequence_parallel", r"tensor_parallel x 2 x context_parallel = 8"),
        (dict(precision="fp8"), {"layer_impl": "sdpa"}, "parallel.precision", "FP8 GEMMs exist only in Transformer Engine"),
        (dict(precision="fp8"), {"hidden_size": 264, "num_attention_heads": 8}, "parallel.precision", "divisible by 16"),
        (dict(pipeline_parallel=2, recompute=RecomputeConfig(granularity="full", num_layers=5)), {},
         "parallel.recompute.num_layers", "exceeds the 4 layer"),
    ],
)
def test_layout_rules_against_the_model(parallel, model_kw, field, says):
    msg = rejects(says, lambda: ParallelConfig(**parallel), lambda p: p.check_model(model(**model_kw)))
    assert msg.startswith(field)


def test_world_size_and_batch_rules():
    p = ParallelConfig(tensor_parallel=2, pipeline_parallel=2, context_parallel=2)
    p.check_against(model(), world_size=16)
    msg = rejects("not a multiple of", None, lambda _: p.check_against(model(), world_size=12))
    assert "2 x 2 x 2 = 8" in msg and "change the number of GPUs" in msg
    assert p.data_parallel_size(16) == 2
    assert p.check_batch(16, global_batch_size=8, micro_batch_size=2) == 2  # 8 / (2 x DP 2)
    msg = rejects("schedule.global_batch_size", None, lambda _: p.check_batch(16, 6, 2))
    assert "micro_batch_size x data_parallel = 2 x 2" in msg
    vp = ParallelConfig(pipeline_parallel=4, virtual_pipeline=2)
    assert vp.check_batch(8, global_batch_size=16, micro_batch_size=1) == 8
    msg = rejects("interleaved pipeline", None, lambda _: vp.check_batch(8, 12, 1))
    assert "multiple of pipeline_parallel=4" in msg


def test_stage_config_validates_the_layout_and_dpo_limits(tmp_path):
    def stage(kind, parallel, **kw):
        return StageConfig(name="s", kind=kind, model=model(), optimizer=OptimizerConfig(lr=1e-3),
                           schedule=ScheduleConfig(train_iters=1, global_batch_size=8), tokenizer=tmp_path / "t.json",
                           data=tmp_path / "d", output_dir=tmp_path, parallel=parallel, **kw)

    with pytest.raises(ConfigError, match="tensor_parallel=3"):
        stage("pretrain", ParallelConfig(tensor_parallel=3))
    with pytest.raises(ConfigError, match="use pipeline_parallel=1 and context_parallel=1"):
        stage("dpo", ParallelConfig(pipeline_parallel=2), init_from=tmp_path)
    with pytest.raises(ConfigError, match="a cpt stage continues a trained checkpoint; set init_from"):
        stage("cpt", ParallelConfig())
    cfg = stage("cpt", ParallelConfig(tensor_parallel=2, sequence_parallel=True), init_from=tmp_path)
    assert cfg.is_lm
    # The layout round-trips through JSON (run directories, --set overrides).
    again = from_dict(StageConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again.parallel == cfg.parallel


def test_megatron_config_mapping():
    from megatron_alignpt.model.builder import ddp_config, transformer_config

    m = dataclasses.replace(pythia_model("6.9b"), layer_impl="te")
    p = ParallelConfig(tensor_parallel=4, pipeline_parallel=2, virtual_pipeline=2, sequence_parallel=True,
                       context_parallel=2, distributed_optimizer=True, overlap_grad_reduce=True, overlap_param_gather=True,
                       precision="fp8", fp8_recipe="current",
                       recompute=RecomputeConfig(granularity="full", method="block", num_layers=4))
    c = transformer_config(m, p)
    assert (c.tensor_model_parallel_size, c.pipeline_model_parallel_size, c.virtual_pipeline_model_parallel_size,
            c.context_parallel_size, c.sequence_parallel) == (4, 2, 2, 2, True)
    assert (c.fp8, c.fp8_recipe, c.bf16, c.params_dtype) == ("hybrid", "tensorwise", True, torch.bfloat16)
    assert (c.recompute_granularity, c.recompute_method, c.recompute_num_layers) == ("full", "block", 4)
    d = ddp_config(p)
    assert d.use_distributed_optimizer and d.overlap_grad_reduce and d.overlap_param_gather and d.grad_reduce_in_fp32

    delayed = transformer_config(m, dataclasses.replace(p, fp8_recipe="delayed", recompute=RecomputeConfig("selective")))
    assert delayed.fp8_recipe == "delayed"
    assert (delayed.recompute_granularity, delayed.recompute_modules) == ("selective", ["core_attn"])
    plain = transformer_config(m, ParallelConfig(precision="bf16"))
    assert plain.fp8 is None and plain.bf16 and plain.virtual_pipeline_model_parallel_size is None
    assert plain.recompute_granularity is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusals")
def test_gpu_only_layouts_are_refused_before_building_on_cpu():
    from megatron_alignpt.model.builder import LayoutUnavailable, check_runtime

    cpu_model = model(layer_impl="sdpa", seq_length=64)
    with pytest.raises(LayoutUnavailable, match="fp8 needs a CUDA GPU with Transformer Engine"):
        check_runtime(model(), ParallelConfig(precision="fp8"))
    with pytest.raises(LayoutUnavailable, match="layer_impl=te needs CUDA"):
        check_runtime(model(), ParallelConfig())
    with pytest.raises(LayoutUnavailable, match="needs apex's FusedLayerNorm on a GPU"):
        check_runtime(cpu_model, ParallelConfig(tensor_parallel=2, sequence_parallel=True))
    with pytest.raises(LayoutUnavailable, match="fusions.rope=on: fused kernels run on a GPU"):
        check_runtime(cpu_model, ParallelConfig(fusions=FusionConfig(rope="on")))
    check_runtime(cpu_model, ParallelConfig(pipeline_parallel=2, recompute=RecomputeConfig("full", num_layers=2)))
    check_runtime(cpu_model, ParallelConfig(distributed_optimizer=True))  # megatron's, over gloo


@pytest.fixture
def gpu_with_te(monkeypatch):
    """This machine as a GPU node with Transformer Engine but no apex extensions, as megatron sees it."""
    import megatron.core.optimizer as mcore_optimizer
    from megatron.core.models.common.embeddings import rope_utils
    from megatron.core.models.common.language_module import language_module

    from megatron_alignpt.model import fusions

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(rope_utils, "fused_apply_rotary_pos_emb", lambda *a, **k: None)
    monkeypatch.setattr(language_module, "te_parallel_cross_entropy", lambda *a, **k: None)
    monkeypatch.setattr(mcore_optimizer, "Adam", type("FusedAdam", (), {}))
    monkeypatch.setattr(fusions, "_extension", lambda name: False)


def test_fusions_default_to_the_fast_path_a_gpu_allows(gpu_with_te):
    from megatron_alignpt.model.fusions import FusionUnavailable, resolve_fusions

    auto = resolve_fusions(FusionConfig(), "te")
    assert (auto.rope, auto.cross_entropy, auto.cross_entropy_impl, auto.adam, auto.bias_dropout) == (True, True, "te", True, True)
    # apex's extensions are missing; bias+GELU would change GELU to its tanh approximation: off by default
    assert not auto.gradient_accumulation and not auto.masked_softmax and not auto.bias_activation
    off = resolve_fusions(FusionConfig(rope="off", cross_entropy="off", adam="off", bias_dropout="off"), "te")
    assert not any(getattr(off, f.name) for f in dataclasses.fields(FusionConfig))
    assert resolve_fusions(FusionConfig(bias_activation="on"), "te").bias_activation
    with pytest.raises(FusionUnavailable, match="gradient_accumulation=on: needs apex's fused_weight_gradient_mlp_cuda"):
        resolve_fusions(FusionConfig(gradient_accumulation="on"), "te")
    with pytest.raises(FusionUnavailable, match="masked_softmax=on: only layer_impl=local uses"):
        resolve_fusions(FusionConfig(masked_softmax="on"), "sdpa")


def test_resolved_fusions_reach_megatron_config(gpu_with_te):
    from megatron_alignpt.model.builder import transformer_config_kwargs

    kwargs = transformer_config_kwargs(model(layer_impl="te"), ParallelConfig(precision="bf16"))
    assert (kwargs["apply_rope_fusion"], kwargs["cross_entropy_loss_fusion"], kwargs["cross_entropy_fusion_impl"],
            kwargs["bias_dropout_fusion"], kwargs["bias_activation_fusion"], kwargs["gradient_accumulation_fusion"]) == (
        True, True, "te", True, False, False)
    off = ParallelConfig(precision="bf16", fusions=FusionConfig(rope="off", cross_entropy="off", bias_dropout="off"))
    kwargs = transformer_config_kwargs(model(layer_impl="te"), off)
    assert not (kwargs["apply_rope_fusion"] or kwargs["cross_entropy_loss_fusion"] or kwargs["bias_dropout_fusion"])


def test_fusion_switches_are_validated():
    with pytest.raises(ConfigError, match="parallel.fusions.rope: use auto, on or off"):
        FusionConfig(rope="yes")


def test_adam_switch_sets_the_flags_megatron_builds_saves_and_loads_by(monkeypatch):
    """With TE installed, fusions.adam=off must make megatron build torch's AdamW *and* checkpoint it the
    torch way (the distributed optimizer re-reads these flags on every save and load)."""
    import megatron.core.optimizer as mcore_optimizer
    from megatron.core.optimizer import distrib_optimizer as dist

    from megatron_alignpt.train import optimizer

    for module, name, value in ((mcore_optimizer, "USING_PYTORCH_OPTIMIZER", False), (dist, "HAVE_APEX_OR_TE", True),
                                (dist, "USING_TE_OPTIMIZER", True), (dist, "USING_APEX_OPTIMIZER", False)):
        monkeypatch.setattr(module, name, value)
    monkeypatch.setattr(optimizer, "_IMPORT_TIME_FLAGS", {})
    optimizer._select_adam(fused=False)
    assert (mcore_optimizer.USING_PYTORCH_OPTIMIZER, dist.HAVE_APEX_OR_TE, dist.USING_TE_OPTIMIZER) == (True, False, False)
    optimizer._select_adam(fused=True)
    assert (mcore_optimizer.USING_PYTORCH_OPTIMIZER, dist.HAVE_APEX_OR_TE, dist.USING_TE_OPTIMIZER) == (False, True, True)
