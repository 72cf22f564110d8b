"""Layer modules are chosen by device, not by what is installed.

Transformer Engine is simulated as installed: our availability check reports it, and megatron-core's
import-time LayerNorm defaults (which it picks when transformer_engine imports) are replaced by a
module that, like TE's, cannot run on a CPU. A CPU model must not contain it anywhere.
"""
import pytest
import torch

from megatron_alignpt.model import specs
from megatron_alignpt.model.config import ModelConfig, ParallelConfig


class CudaOnlyNorm(torch.nn.Module):
    """Stands in for TENorm / apex FusedLayerNorm: constructing it off-GPU fails, as theirs does."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("CUDAGuardImpl initialized with non-CUDA DeviceType: cpu")


@pytest.fixture
def te_installed(monkeypatch):
    from megatron.core.models.gpt import gpt_layer_specs
    from megatron.core.transformer import transformer_block

    monkeypatch.setattr(specs, "_installed", lambda module: module in ("transformer_engine", "apex"))
    monkeypatch.setattr(transformer_block, "LayerNormImpl", CudaOnlyNorm)
    monkeypatch.setattr(gpt_layer_specs, "LNImpl", CudaOnlyNorm)


@pytest.mark.parametrize("architecture", ["gpt", "pythia"])
@pytest.mark.parametrize("layer_impl", ["auto", "sdpa"])
def test_cpu_model_is_built_from_torch_modules_even_with_te_installed(te_installed, architecture, layer_impl):
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.runtime import init_parallel

    init_parallel(1, 1, 0)
    cfg = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=16,
                      layer_impl=layer_impl, architecture=architecture)
    model = build_gpt_model(cfg, ParallelConfig(), 300)
    norms = [m for m in model.modules() if "norm" in type(m).__name__.lower()]
    # two per layer and the final one, each torch's own LayerNorm
    assert len(norms) == 2 * cfg.num_layers + 1
    assert all(type(m) is torch.nn.LayerNorm for m in norms)
    assert type(model.decoder.final_layernorm) is torch.nn.LayerNorm
    assert not [m for m in model.modules() if type(m).__module__.startswith(("transformer_engine", "apex"))]
    tokens = torch.randint(0, 300, (2, 16))
    logits = model(tokens, torch.arange(16).expand(2, -1), None)
    assert logits.shape[:2] == (2, 16) and torch.isfinite(logits).all()


def test_auto_picks_te_on_a_gpu_with_te_and_sdpa_without(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(specs, "_installed", lambda module: module == "transformer_engine")
    assert specs.resolve_layer_impl("auto") == "te"
    monkeypatch.setattr(specs, "_installed", lambda module: False)
    assert specs.resolve_layer_impl("auto") == "sdpa"
    with pytest.raises(RuntimeError, match="layer_impl=te needs CUDA and transformer_engine"):
        specs.resolve_layer_impl("te")


def test_cpu_never_resolves_to_te_or_apex(te_installed):
    assert not torch.cuda.is_available()
    assert specs.resolve_layer_impl("auto") == "sdpa"
    assert not specs.apex_layer_norm_available()
    with pytest.raises(RuntimeError, match="layer_impl=te needs CUDA"):
        specs.resolve_layer_impl("te")
