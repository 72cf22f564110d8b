"""Generation with megatron's KV cache gives the same greedy tokens as re-running the whole context."""
import pytest
import torch

from megatron_alignpt.eval.generation import FINISH_EOD, generate, generate_ids, supports_kv_cache


@pytest.fixture(scope="module")
def trained(tiny_lm_data, tmp_path_factory):
    from megatron_alignpt.eval.run import load_model_for_eval
    from megatron_alignpt.train.trainer import run_stage
    from tests.unit.test_train_core import stage

    result = run_stage(stage(tiny_lm_data, tmp_path_factory.mktemp("kv_model"), iters=3, save_interval=0))
    model, tokenizer, cfg, _ = load_model_for_eval(result.checkpoint)
    return model, tokenizer, cfg, result.checkpoint


PROMPTS = ["the cat", "birds sang over green hills near old towns and the", "dogs", "a mat while dogs ran in", "old"]


def test_cached_and_uncached_greedy_outputs_match(trained):
    model, tokenizer, cfg, _ = trained
    assert supports_kv_cache(model)
    kw = dict(max_new_tokens=12, max_len=cfg.max_positions, batch_size=3)
    cached = generate(model, tokenizer, PROMPTS, kv_cache=True, **kw)
    uncached = generate(model, tokenizer, PROMPTS, kv_cache=False, **kw)
    assert [g.token_ids for g in cached] == [g.token_ids for g in uncached]
    assert [g.finish_reason for g in cached] == [g.finish_reason for g in uncached]
    assert generate(model, tokenizer, PROMPTS, **kw) == cached  # the default uses the cache
    assert any(len(g.token_ids) > 3 for g in cached)


def test_cache_drops_finished_rows_and_keeps_the_others_right(trained):
    """Rows that stop early (a stop string) leave the cache; the remaining rows go on as if alone."""
    model, tokenizer, cfg, _ = trained
    kw = dict(max_new_tokens=10, max_len=cfg.max_positions, batch_size=5)
    free = generate(model, tokenizer, PROMPTS, kv_cache=False, **kw)
    # stop each row at the second token it generates, for some rows only
    stops = [tokenizer.detokenize([g.token_ids[1]]) for g in free[:2] if len(g.token_ids) > 1]
    cached = generate(model, tokenizer, PROMPTS, kv_cache=True, stop=stops, **kw)
    uncached = generate(model, tokenizer, PROMPTS, kv_cache=False, stop=stops, **kw)
    assert cached == uncached


def test_cache_is_used_only_when_the_context_fits(trained):
    model, tokenizer, cfg, _ = trained
    ids = [tokenizer.tokenize(p) for p in PROMPTS]
    longest = max(len(i) for i in ids)
    with pytest.raises(ValueError, match="exceeds max_len"):
        generate_ids(model, tokenizer, ids, max_new_tokens=8, max_len=longest + 4, kv_cache=True)
    # auto falls back to the sliding window, which still matches an explicit uncached run
    auto = generate_ids(model, tokenizer, ids, max_new_tokens=8, max_len=longest + 4)
    assert auto == generate_ids(model, tokenizer, ids, max_new_tokens=8, max_len=longest + 4, kv_cache=False)

    class NotMegatron(torch.nn.Module):
        def forward(self, tokens, positions, mask):
            return torch.zeros(*tokens.shape, tokenizer.vocab_size)

    assert not supports_kv_cache(NotMegatron())
    with pytest.raises(ValueError, match="megatron GPTModel"):
        generate_ids(NotMegatron(), tokenizer, ids, max_new_tokens=2, kv_cache=True)
    out = generate_ids(NotMegatron(), tokenizer, ids[:1], max_new_tokens=2)
    assert out[0].finish_reason == FINISH_EOD or out[0].token_ids == (0, 0)


def _cached_at_tp(rank, ckpt_dir, tp):
    from pathlib import Path

    from megatron_alignpt.eval.run import load_model_for_eval

    model, tokenizer, cfg, _ = load_model_for_eval(Path(ckpt_dir), tensor_parallel=tp)
    outs = generate(model, tokenizer, PROMPTS, max_new_tokens=8, max_len=cfg.max_positions, batch_size=2, kv_cache=True)
    return [g.token_ids for g in outs]


@pytest.mark.slow
def test_cached_generation_under_tensor_parallel_2(trained):
    from megatron_alignpt.testing import run_distributed

    model, tokenizer, cfg, ckpt = trained
    expected = [g.token_ids for g in generate(model, tokenizer, PROMPTS, max_new_tokens=8, max_len=cfg.max_positions,
                                              batch_size=2, kv_cache=False)]
    tp2 = run_distributed(_cached_at_tp, 2, str(ckpt), 2)
    assert tp2[0] == tp2[1] == expected
