"""DPO: the loss against a hand computation on a real model, cached vs online reference, margins, TP=2 parity."""
import json
import math
import random
from pathlib import Path

import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.posttrain.config import DPOConfig, SFTConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig

WORDS = "the cat sat on a mat while dogs ran in parks and birds sang over green hills near old towns".split()
MODEL = dict(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=64, architecture="pythia")


def _text(rng, lo, hi):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


@pytest.fixture(scope="module")
def posttrain_data(tmp_path_factory):
    rng = random.Random(0)
    root = tmp_path_factory.mktemp("dpo")
    chat = root / "chat.jsonl"
    chat.write_text("".join(json.dumps({"input": _text(rng, 2, 8), "output": _text(rng, 2, 10)}) + "\n" for _ in range(16)))
    pairs = root / "pairs.jsonl"
    rows = []
    for i in range(12):
        prompt = _text(rng, 2, 8)
        chosen, rejected = "birds sang over green hills " + _text(rng, 0, 3), "dogs ran in parks " + _text(rng, 0, 3)
        rows.append({"prompt": prompt, "chosen_response": chosen, "rejected_response": rejected} if i % 2
                    else {"prompt": [{"role": "user", "content": prompt}], "chosen": chosen, "rejected": rejected})
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"chat": chat, "pairs": pairs, "root": root}


def _stage(kind, data, tokenizer, out, iters, tp=1, init_from=None, lr=1e-3, save_interval=0, **extra):
    return StageConfig(
        name=kind, kind=kind, model=ModelConfig(**MODEL),
        optimizer=OptimizerConfig(lr=lr, warmup_fraction=0.0, decay_style="constant"),
        schedule=ScheduleConfig(train_iters=iters, global_batch_size=4, micro_batch_size=2, log_interval=100,
                                save_interval=save_interval),
        tokenizer=tokenizer, data=data, output_dir=Path(out), parallel=ParallelConfig(tensor_parallel=tp),
        init_from=Path(init_from) if init_from else None, **extra,
    )


def _metrics(run_dir, key="loss"):
    return [json.loads(line)[key] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def sft_checkpoint(posttrain_data, tiny_lm_data):
    from megatron_alignpt.train.trainer import run_stage

    cfg = _stage("sft", posttrain_data["chat"], tiny_lm_data["tokenizer"], posttrain_data["root"] / "sft", iters=3, lr=3e-3)
    return run_stage(cfg).checkpoint


def test_long_pairs_keep_the_prompt_end_and_both_replies():
    from megatron_alignpt.posttrain.dpo import fit_pair

    prompt, chosen, rejected = list(range(100, 130)), list(range(10)), list(range(20))
    p, c, r = fit_pair(prompt, chosen, rejected, seq_length=31)  # 32 ids per side
    assert p == prompt[-16:] and c == chosen and r == rejected[:16]
    assert fit_pair(prompt[:5], chosen, rejected, 31) == (prompt[:5], chosen, rejected)
    p, c, r = fit_pair(prompt[:25], chosen, rejected[:12], 31)  # replies fit once the prompt keeps 20
    assert p == prompt[5:25] and c == chosen and r == rejected[:12]


def _file_pairs(path) -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) texts as the preference file states them, in either of its formats."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        row = json.loads(line)
        prompt = row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"]
        pairs.append((prompt, row.get("chosen_response", row.get("chosen")), row.get("rejected_response", row.get("rejected"))))
    return pairs


def _reply_ids(tok, prompt: str, reply: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, labels and a mask over the reply's labels (its tokens and the closing end-of-text)."""
    from megatron_alignpt.posttrain.chat_format import Turn, render_prompt

    context, answer = render_prompt(tok, [Turn("user", prompt)]), tok.tokenize(reply) + [tok.eod]
    ids = context + answer
    mask = [0.0] * (len(context) - 1) + [1.0] * len(answer)
    return torch.tensor(ids[:-1]), torch.tensor(ids[1:]), torch.tensor(mask)


def _reply_logprob(model, tokens, labels, mask):
    """Independent of megatron's loss path: log_softmax over the full logits, summed over reply labels."""
    logits = model(tokens[None], torch.arange(len(tokens))[None], None)[0].float()
    logp = torch.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
    return float((logp * mask).sum())


def _file_margin(model, tok, pair) -> float:
    """log p(chosen) - log p(rejected) for one (prompt, chosen, rejected) pair of the file."""
    prompt, chosen, rejected = pair
    with torch.no_grad():
        return _reply_logprob(model, *_reply_ids(tok, prompt, chosen)) - _reply_logprob(model, *_reply_ids(tok, prompt, rejected))


def _builder(tok):
    from megatron_alignpt.model.builder import build_gpt_model

    return lambda: build_gpt_model(ModelConfig(**MODEL), ParallelConfig(), tok.vocab_size)


def test_the_batch_the_loss_sees_keeps_chosen_first(posttrain_data, tiny_lm_data, sft_checkpoint):
    """File -> pairs -> batch: the loss takes the first half of a batch as chosen; those rows train on
    exactly the file's chosen replies, the second half on its rejected ones, after the same prompt."""
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.posttrain.dpo import DPOTask
    from megatron_alignpt.runtime import init_parallel

    init_parallel(1, 1, seed=11)
    tok = TextTokenizer(tiny_lm_data["tokenizer"])
    task = DPOTask(posttrain_data["pairs"], tok, 64, 0, DPOConfig(reference="online"), _builder(tok), sft_checkpoint)
    pairs = _file_pairs(posttrain_data["pairs"])
    n = 4
    batch = task.collate(task.samples[:n])
    assert batch["tokens"].shape[0] == 2 * n
    for i, (prompt, chosen, rejected) in enumerate(pairs[:n]):
        for row, reply in ((i, chosen), (n + i, rejected)):  # [chosen..., rejected...]
            tokens, labels, mask = _reply_ids(tok, prompt, reply)
            width = len(tokens)
            assert batch["tokens"][row, :width].tolist() == tokens.tolist()
            assert batch["labels"][row, :width].tolist() == labels.tolist()
            assert batch["loss_mask"][row].tolist() == mask.tolist() + [0.0] * (64 - width)


def test_dpo_loss_matches_hand_computation_on_a_model(posttrain_data, tiny_lm_data, sft_checkpoint):
    """The task's loss and reward margin on the file's first pairs, against log-probabilities of the
    file's chosen and rejected replies computed here from the texts."""
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.posttrain.dpo import DPOTask
    from megatron_alignpt.runtime import init_parallel

    init_parallel(1, 1, seed=11)
    tok = TextTokenizer(tiny_lm_data["tokenizer"])
    builder = _builder(tok)
    beta = 0.7
    task = DPOTask(posttrain_data["pairs"], tok, 64, 0, DPOConfig(beta=beta), builder, sft_checkpoint)
    policy = builder().eval()  # fresh random weights: differs from the reference
    with torch.no_grad():
        output, loss_fn = task.forward_step(iter([task.collate(task.samples[:3])]), policy)
        loss, logs = loss_fn(output)
        expected = []
        for pair in _file_pairs(posttrain_data["pairs"])[:3]:
            margin = beta * (_file_margin(policy, tok, pair) - _file_margin(task.reference, tok, pair))
            expected.append((math.log1p(math.exp(-margin)), margin))
    assert loss.item() == pytest.approx(sum(e[0] for e in expected) / 3, abs=1e-4)
    assert logs["reward_margin"].item() == pytest.approx(sum(e[1] for e in expected) / 3, abs=1e-4)
    assert any(abs(e[1]) > 1e-3 for e in expected)  # a non-trivial example


def test_cached_reference_matches_online_and_is_reused_on_resume(posttrain_data, tiny_lm_data, sft_checkpoint, tmp_path, monkeypatch):
    import megatron_alignpt.posttrain.dpo as dpo
    from megatron_alignpt.train.trainer import run_stage

    monkeypatch.setenv("ALIGNPT_CACHE_DIR", str(tmp_path / "cache"))
    args = ("dpo", posttrain_data["pairs"], tiny_lm_data["tokenizer"])
    run_stage(_stage(*args, tmp_path / "online", iters=4, init_from=sft_checkpoint, dpo=DPOConfig(beta=0.5)))
    cached_cfg = _stage(*args, tmp_path / "cached", iters=4, init_from=sft_checkpoint, save_interval=2,
                        dpo=DPOConfig(beta=0.5, reference="cached"))
    run_stage(cached_cfg, stop_after=3)  # interrupted after step 3; the last checkpoint is step 2
    entries = list((tmp_path / "cached" / "reference_logps").glob("*.npy"))  # kept with the stage
    assert not (tmp_path / "cache").exists()
    assert len(entries) == 1
    meta = json.loads(entries[0].with_suffix(".json").read_text())
    assert meta["n_pairs"] == 12 and meta["seq_length"] == 64 and len(meta["reference_sha256"]) == 64

    def no_reference(*a, **k):
        raise AssertionError("the cached run must not load the reference model again")

    monkeypatch.setattr(dpo, "frozen_reference", no_reference)
    assert run_stage(cached_cfg).iteration == 4  # resumes at step 2 and reads the cache
    assert _metrics(tmp_path / "cached") == pytest.approx(_metrics(tmp_path / "online"), abs=1e-5)

    changed = tmp_path / "pairs2.jsonl"
    changed.write_text("\n".join(posttrain_data["pairs"].read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(AssertionError, match="must not load"):  # other data: another key, so it recomputes
        run_stage(_stage("dpo", changed, tiny_lm_data["tokenizer"], tmp_path / "other", iters=1,
                         init_from=sft_checkpoint, dpo=DPOConfig(reference="cached")))


def test_short_dpo_run_raises_the_chosen_minus_rejected_margin(posttrain_data, tiny_lm_data, sft_checkpoint, tmp_path, monkeypatch):
    """A few DPO steps raise log p(chosen) - log p(rejected) of the file's own pairs, measured on the texts."""
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.posttrain.dpo import frozen_reference
    from megatron_alignpt.train.trainer import run_stage

    cfg = _stage("dpo", posttrain_data["pairs"], tiny_lm_data["tokenizer"], tmp_path / "dpo", iters=12,
                 init_from=sft_checkpoint, lr=2e-3, dpo=DPOConfig(beta=0.5, reference="cached"))
    monkeypatch.setenv("ALIGNPT_CACHE_DIR", str(tmp_path / "cache"))
    result = run_stage(cfg)
    tok = TextTokenizer(tiny_lm_data["tokenizer"])
    pairs = _file_pairs(posttrain_data["pairs"])
    before_model, after_model = (frozen_reference(_builder(tok), ckpt) for ckpt in (sft_checkpoint, result.checkpoint))
    before = [_file_margin(before_model, tok, pair) for pair in pairs]
    after = [_file_margin(after_model, tok, pair) for pair in pairs]
    assert sum(after) / len(pairs) > sum(before) / len(pairs) + 1.0, (before, after)
    assert sum(a > b for a, b in zip(after, before)) >= len(pairs) - 1  # nearly every pair, not an average of a few
    logged = _metrics(tmp_path / "dpo", "reward_margin")
    assert abs(logged[0]) < 1e-5 and logged[-1] > 0.1  # starts at the reference, ends preferring chosen


def _posttrain_at_tp(rank, data, tokenizer, init_from, out, tp, cache):
    import os

    from megatron_alignpt.train.trainer import run_stage

    os.environ["ALIGNPT_CACHE_DIR"] = cache
    run_stage(_stage("sft", data["chat"], tokenizer, Path(out) / "sft", iters=3, tp=tp, init_from=init_from,
                     sft=SFTConfig(packing="first_fit")))
    run_stage(_stage("dpo", data["pairs"], tokenizer, Path(out) / "dpo", iters=3, tp=tp, init_from=init_from,
                     dpo=DPOConfig(beta=0.5, reference="cached")))
    return (_metrics(Path(out) / "sft"), _metrics(Path(out) / "dpo")) if rank == 0 else None


@pytest.mark.slow
def test_sft_and_dpo_under_tensor_parallel_2_match_tp1(posttrain_data, tiny_lm_data, sft_checkpoint, tmp_path):
    """The same code trains SFT (packed) and DPO (cached reference) at TP=2 with gloo; losses track TP=1."""
    from megatron_alignpt.testing import run_distributed

    data = {k: str(v) for k, v in posttrain_data.items()}
    args = (data, str(tiny_lm_data["tokenizer"]), str(sft_checkpoint))
    (tp1,) = run_distributed(_posttrain_at_tp, 1, *args, str(tmp_path / "tp1"), 1, str(tmp_path / "cache1"))
    tp2 = run_distributed(_posttrain_at_tp, 2, *args, str(tmp_path / "tp2"), 2, str(tmp_path / "cache2"))[0]
    for ours, ref in zip(tp2, tp1):
        assert len(ours) == len(ref) == 3
        assert ours == pytest.approx(ref, rel=1e-4, abs=1e-5)
