"""Benchmark shapes: the Pythia-2.8B shape and the 6.9B layer at 8 layers match the released models, counted
in megatron's and in transformers' own modules (built on the meta device: no memory), and both benchmarks
count the same FLOPs."""
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from _common import SHAPES, megatron_model_flops_per_step, model_config  # noqa: E402

from recipes.pythia_sizes import non_embedding_parameters, pythia_model  # noqa: E402

# Non-embedding parameters of the released models (Pythia paper, table 1; HF model cards).
PYTHIA_2P8B_NON_EMBEDDING = 2_517_652_480
PYTHIA_6P9B_NON_EMBEDDING = 6_444_163_072


def _per_layer_6p9b() -> int:
    final_norm = 2 * 4096
    return (PYTHIA_6P9B_NON_EMBEDDING - final_norm) // 32


EXPECTED = {"2.8b": PYTHIA_2P8B_NON_EMBEDDING, "6.9b-8l": 8 * _per_layer_6p9b() + 2 * 4096}


def test_new_shapes_are_the_pythia_shapes():
    for size, source, layers in (("2.8b", "2.8b", 32), ("6.9b-8l", "6.9b", 8)):
        shape, released = SHAPES[size], pythia_model(source)
        assert (shape.hidden_size, shape.num_attention_heads, shape.ffn_hidden_size, shape.seq_length) == (
            released.hidden_size, released.num_attention_heads, released.ffn_size, released.seq_length)
        assert shape.num_layers == layers and shape.vocab_size == 50304
    assert (SHAPES["6.9b-8l"].hidden_size, SHAPES["6.9b-8l"].num_attention_heads, SHAPES["6.9b-8l"].ffn_hidden_size) == (
        4096, 32, 16384)
    assert (SHAPES["2.8b"].hidden_size, SHAPES["2.8b"].num_attention_heads, SHAPES["2.8b"].ffn_hidden_size) == (2560, 32, 10240)
    assert non_embedding_parameters(pythia_model("6.9b")) == PYTHIA_6P9B_NON_EMBEDDING
    for size, expected in EXPECTED.items():
        assert non_embedding_parameters(model_config(SHAPES[size], architecture="pythia")) == expected


def _non_embedding(named_parameters, embedding_names) -> int:
    return sum(p.numel() for name, p in named_parameters if not any(e in name for e in embedding_names))


def test_megatron_builds_the_published_parameter_counts():
    import torch

    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.runtime import init_parallel

    init_parallel(1, 1, seed=0)
    for size, expected in EXPECTED.items():
        shape = SHAPES[size]
        with torch.device("meta"):
            model = build_gpt_model(model_config(shape, "sdpa", architecture="pythia"), ParallelConfig(), shape.vocab_size)
        assert _non_embedding(model.named_parameters(), ("word_embeddings", "output_layer")) == expected, size
        embeddings = sum(p.numel() for p in model.parameters()) - expected
        assert embeddings == 2 * shape.vocab_size * shape.hidden_size  # untied input and output embeddings


def test_the_hf_peer_builds_the_same_model():
    import torch
    from transformers import GPTNeoXForCausalLM

    from hf_train_throughput import hf_config

    for size, expected in EXPECTED.items():
        shape = SHAPES[size]
        config = hf_config(shape, shape.seq_length, "sdpa")
        assert config.use_parallel_residual and not config.tie_word_embeddings
        assert config.rope_parameters["partial_rotary_factor"] == 0.25 and config.hidden_act == "gelu"
        with torch.device("meta"):
            model = GPTNeoXForCausalLM(config)
        assert _non_embedding(model.named_parameters(), ("embed_in", "embed_out", "lm_head")) == expected, size


@pytest.mark.parametrize("size", ["1.4b", "2.8b", "6.9b-8l"])
def test_both_benchmarks_count_the_trainers_flops(size):
    from megatron_alignpt.train.telemetry import model_flops_per_step

    shape = SHAPES[size]
    ours = model_flops_per_step(model_config(shape, architecture="pythia"), shape.vocab_size, 16)
    peer = megatron_model_flops_per_step(16, shape.seq_length, shape.num_layers, shape.hidden_size, shape.vocab_size)
    assert ours == pytest.approx(peer, rel=1e-12)
    if size == "1.4b":
        assert ours == pytest.approx(2.973e14, rel=1e-3)  # the figure benchmarks/README.md quotes
