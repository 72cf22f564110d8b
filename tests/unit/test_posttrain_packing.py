"""SFT: sequence packing (bin packing, block-diagonal attention in mask and thd forms, loss parity, multi-epoch)
and the loss mask: prompt tokens carry exactly zero weight, packed or not."""
import json
import random

import pytest
import torch

from megatron_alignpt.model.config import ModelConfig, ParallelConfig
from megatron_alignpt.posttrain.packing import (
    FORM_MASK,
    FORM_THD,
    cu_seqlens_from_segments,
    first_fit_decreasing,
    greedy_in_order,
    model_inputs,
    pack_documents,
)

WORDS = "the cat sat on a mat while dogs ran in parks and birds sang over green hills near old towns".split()


def _conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)

    def text(lo, hi):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": text(2, 12)}, {"role": "assistant", "content": text(2, 14)}]
        if i % 3 == 0:
            msgs = [{"role": "system", "content": text(1, 4)}] + msgs
        rows.append({"messages": msgs})
    return rows


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sft") / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _conversations(12)))
    return path


def _naive_first_fit(lengths, capacity):
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        for r, left in enumerate(room):
            if left >= lengths[i]:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def test_first_fit_decreasing_matches_the_quadratic_definition():
    rng = random.Random(3)
    for _ in range(30):
        cap = rng.randint(5, 60)
        lengths = [rng.randint(1, cap) for _ in range(rng.randint(0, 80))]
        assert first_fit_decreasing(lengths, cap) == _naive_first_fit(lengths, cap)
    assert first_fit_decreasing([6, 5, 4, 3, 2], 10) == [[0, 2], [1, 3, 4]]


def test_greedy_keeps_data_order_and_respects_capacity():
    rows = greedy_in_order([4, 4, 3, 6, 1, 9], 10)
    assert rows == [[0, 1], [2, 3, 4], [5]]
    assert [i for row in rows for i in row] == list(range(6))
    with pytest.raises(ValueError, match="item 1 has length 11"):
        greedy_in_order([3, 11], 10)


def test_packed_rows_carry_every_conversation_with_restarting_positions():
    docs = [([9, 1, 2, 3], [0, 0, 1, 1]), ([9, 4, 5], [0, 1, 1]), ([9, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], [1] * 11)]
    samples, stats = pack_documents(docs, seq_length=8, pad_id=0, algorithm="greedy")
    assert stats.rows == 2 and stats.conversations == 3
    first, second = samples
    assert first["tokens"].tolist() == [9, 1, 2, 9, 4, 0, 0, 0]
    assert first["labels"].tolist() == [1, 2, 3, 4, 5, 0, 0, 0]
    assert first["loss_mask"].tolist() == [0, 1, 1, 1, 1, 0, 0, 0]
    assert first["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert first["segment_ids"].tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    # too long: truncated to seq_length + 1 ids, alone in its row, no padding segment
    assert second["tokens"].tolist() == [9, 6, 7, 8, 9, 10, 11, 12]
    assert second["segment_ids"].tolist() == [0] * 8
    cu, longest = cu_seqlens_from_segments(torch.stack([first["segment_ids"], second["segment_ids"]]))
    assert cu.tolist() == [0, 3, 5, 8, 16] and longest == 8 and cu.dtype == torch.int32


@pytest.fixture(scope="module")
def tiny_model(tiny_lm_data):
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.runtime import init_parallel

    init_parallel(1, 1, seed=5)
    tok = TextTokenizer(tiny_lm_data["tokenizer"])
    cfg = ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=128, architecture="pythia", layer_impl="sdpa")
    model = build_gpt_model(cfg, ParallelConfig(), tok.vocab_size).eval()
    return model, tok


@pytest.mark.parametrize("form", [FORM_MASK, FORM_THD])
def test_each_packed_conversation_has_its_logits_alone(tiny_model, form):
    """Documents never attend across boundaries: logits inside a packed row equal those of the conversation alone."""
    from megatron_alignpt.posttrain.chat_format import parse_conversation, render_turns

    model, tok = tiny_model
    rendered = [render_turns(tok, parse_conversation(r, "x", i)) for i, r in enumerate(_conversations(9, seed=1))]
    samples, stats = pack_documents(rendered, seq_length=128, pad_id=tok.eod, algorithm="first_fit")
    assert stats.rows < len(rendered)  # rows really hold several conversations
    batch = {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
    inputs = model_inputs(batch, form)
    with torch.no_grad():
        logits = model(inputs.tokens, inputs.position_ids, inputs.attention_mask,
                       **({"packed_seq_params": inputs.packed_seq_params} if form == FORM_THD else {}))
        logits = logits.reshape(len(samples), 128, -1)
        alone = {tuple(ids[:-1]): model(torch.tensor([ids[:-1]]), torch.arange(len(ids) - 1)[None], None)[0]
                 for ids, _ in rendered}
    checked = 0
    for row, sample in enumerate(samples):
        for seg in sample["segment_ids"].unique().tolist():
            where = (sample["segment_ids"] == seg).nonzero().flatten()
            key = tuple(sample["tokens"][where].tolist())
            if key not in alone:  # the padding tail
                continue
            torch.testing.assert_close(logits[row, where], alone[key], rtol=0, atol=2e-5)
            checked += 1
    assert checked == len(rendered)


def _loss(task, samples, model):
    batch = task.collate(samples)
    output, loss_fn = task.forward_step(iter([batch]), model)
    return loss_fn(output)[0].item()


@pytest.mark.parametrize("algorithm", ["first_fit", "greedy"])
def test_packed_and_unpacked_sft_give_the_same_loss(tiny_model, tiny_lm_data, chat_file, algorithm):
    from megatron_alignpt.posttrain.sft import SFTTask
    from megatron_alignpt.posttrain.config import SFTConfig

    model, _ = tiny_model
    args = (chat_file, tiny_model[1], 128, 0)
    plain = SFTTask(*args, SFTConfig())
    packed = SFTTask(*args, SFTConfig(packing=algorithm))
    assert len(packed.samples) < len(plain.samples)
    sum_plain = sum(float(s["loss_mask"].sum()) for s in plain.samples)
    assert sum(float(s["loss_mask"].sum()) for s in packed.samples) == sum_plain
    with torch.no_grad():
        assert _loss(packed, packed.samples, model) == pytest.approx(_loss(plain, plain.samples, model), abs=1e-5)
    everything = SFTTask(*args, SFTConfig(packing=algorithm, assistant_only_loss=False))
    assert sum(float(s["loss_mask"].sum()) for s in everything.samples) > sum_plain


def _reply_label_mask(labels: torch.Tensor, replies: list[list[int]]) -> torch.Tensor:
    """1 where a row's labels are one of the assistant replies (its tokens and closing end-of-text), else 0."""
    mask = torch.zeros_like(labels, dtype=torch.float)
    found = 0
    for row in range(labels.shape[0]):
        seq = labels[row].tolist()
        for reply in replies:
            for start in range(len(seq) - len(reply) + 1):
                if seq[start : start + len(reply)] == reply:
                    mask[row, start : start + len(reply)] = 1.0
                    found += 1
    assert found >= len(replies)
    return mask


@pytest.mark.parametrize("packing", ["none", "first_fit"])
def test_prompt_tokens_carry_exactly_zero_loss_weight(tiny_model, chat_file, packing):
    """The SFT loss is the mean per-token loss over the file's assistant replies alone, and rewriting every
    label outside the replies (system and user turns, role tags, padding) leaves it bit for bit unchanged."""
    from megatron_alignpt.posttrain.sft import SFTTask
    from megatron_alignpt.posttrain.config import SFTConfig

    model, tok = tiny_model
    task = SFTTask(chat_file, tok, 128, 0, SFTConfig(packing=packing))
    replies = [tok.tokenize(m["content"]) + [tok.eod] for line in chat_file.read_text().splitlines()
               for m in json.loads(line)["messages"] if m["role"] == "assistant"]
    batch = task.collate(task.samples)
    replies_only = _reply_label_mask(batch["labels"], replies)
    assert 0 < replies_only.sum() < (batch["labels"] != tok.eod).sum()  # prompts are there, and untrained

    def loss_and_per_token(labels):
        with torch.no_grad():
            output, loss_fn = task.forward_step(iter([{**batch, "labels": labels}]), model)
            return loss_fn(output)[0].item(), output.float().reshape(labels.shape)

    loss, per_token = loss_and_per_token(batch["labels"])
    assert loss == pytest.approx(float((per_token * replies_only).sum() / replies_only.sum()), rel=1e-6)
    rewritten = torch.where(replies_only.bool(), batch["labels"], (batch["labels"] + 7) % tok.vocab_size)
    assert loss_and_per_token(rewritten)[0] == loss


def test_packed_sft_trains_over_several_epochs(tiny_lm_data, chat_file, tmp_path):
    from megatron_alignpt.posttrain.config import SFTConfig
    from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig
    from megatron_alignpt.train.trainer import run_stage

    cfg = StageConfig(
        name="sft", kind="sft",
        model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=128, architecture="pythia"),
        optimizer=OptimizerConfig(lr=3e-3, warmup_fraction=0.0, decay_style="constant"),
        schedule=ScheduleConfig(train_iters=8, global_batch_size=2, micro_batch_size=1, log_interval=100),
        tokenizer=tiny_lm_data["tokenizer"], data=chat_file, output_dir=tmp_path / "sft", sft=SFTConfig(packing="first_fit"),
    )
    result = run_stage(cfg)
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert result.iteration == 8 and len(losses) == 8
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-2:]) < sum(losses[:2])
    # 8 steps x 2 sequences cover the packed rows several times, each epoch in a fresh order
    from megatron_alignpt.data.tokenizer import TextTokenizer
    from megatron_alignpt.posttrain.sft import SFTTask

    task = SFTTask(chat_file, TextTokenizer(tiny_lm_data["tokenizer"]), 128, cfg.schedule.seed, cfg.sft)
    rows_n = len(task.samples)
    assert 8 * 2 >= 2 * rows_n
    ds = task.build_dataset(16)
    orders = [[tuple(ds[e * rows_n + i]["tokens"][:12].tolist()) for i in range(rows_n)] for e in range(5)]
    assert all(sorted(o) == sorted(orders[0]) for o in orders)  # every epoch sees every row once
    assert len(set(map(tuple, orders))) > 1
