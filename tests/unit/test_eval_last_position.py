"""The eval reads next-token logits at each row's last position only: same numbers as the full projection."""
import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig


def _model(tp: int = 1):
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.runtime import init_parallel

    init_parallel(tp, 1, seed=3)
    cfg = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=64, architecture="pythia", layer_impl="sdpa")
    return build_gpt_model(cfg, ParallelConfig(tensor_parallel=tp), 300).eval()


def _batch():
    gen = torch.Generator().manual_seed(1)
    lengths = torch.tensor([5, 17, 9, 17, 1])
    tokens = torch.randint(0, 300, (len(lengths), int(lengths.max())), generator=gen)
    for r, n in enumerate(lengths.tolist()):
        tokens[r, n:] = 0  # right padding
    return tokens, lengths


def _compare(model, vocab=290):
    from megatron.core import tensor_parallel

    from megatron_alignpt.eval.letter_scoring import last_position_logits, next_token_logits

    tokens, lengths = _batch()
    positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand(tokens.shape[0], -1)
    with torch.no_grad():
        full = tensor_parallel.gather_from_tensor_model_parallel_region(model(tokens, positions, None))[..., :vocab]
        fast = next_token_logits(model, tokens, lengths, vocab)
        after = model(tokens, positions, None)
        with last_position_logits(model, lengths - 1) as narrowed:
            assert narrowed
            assert model(tokens, positions, None).shape[:2] == (tokens.shape[0], 1)
    expected = full[torch.arange(len(lengths)), lengths - 1]
    assert after.shape[:2] == tokens.shape  # the hook is gone after the block
    return (fast - expected).abs().max().item(), fast.shape


def test_last_position_logits_equal_the_full_projection():
    diff, shape = _compare(_model())
    assert shape == (5, 290) and diff < 1e-5


def test_models_without_an_output_layer_keep_the_full_projection():
    from megatron_alignpt.eval.letter_scoring import last_position_logits, next_token_logits

    class Plain(torch.nn.Module):
        def forward(self, tokens, positions, mask):
            return torch.nn.functional.one_hot(tokens, 300).float().cumsum(1)

    tokens, lengths = _batch()
    with last_position_logits(Plain(), lengths - 1) as narrowed:
        assert not narrowed
    out = next_token_logits(Plain(), tokens, lengths, 300)
    assert torch.equal(out, torch.nn.functional.one_hot(tokens, 300).float().cumsum(1)[torch.arange(5), lengths - 1])


def _tp_worker(rank):
    diff, shape = _compare(_model(tp=2))
    return diff, tuple(shape)


@pytest.mark.slow
def test_last_position_logits_under_tensor_parallel_2():
    from megatron_alignpt.testing import run_distributed

    for diff, shape in run_distributed(_tp_worker, 2):
        assert shape == (5, 290) and diff < 1e-5
