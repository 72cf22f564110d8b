"""HF GPT-NeoX <-> megatron conversion on CPU, against a random tiny `GPTNeoXForCausalLM` (no download).

The HF model's LayerNorms and biases are perturbed away from their (1, 0) init so that a dropped,
swapped or mis-wired one changes the logits; parity is checked to 1e-4 in fp32.
"""
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from megatron_alignpt.data.tokenizer import EOD_TOKEN, TextTokenizer

TOL = 1e-4
SEQ = 48


def make_hf_dir(out: Path, tokenizer: Path, vocab_size: int, parallel_residual: bool = True, seed: int = 0) -> GPTNeoXForCausalLM:
    """Save a random tiny GPT-NeoX with `tokenizer` as its tokenizer.json; returns the model (eval mode)."""
    eod = TextTokenizer(tokenizer).eod
    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        rotary_pct=0.25, rotary_emb_base=5000, max_position_embeddings=128, use_parallel_residual=parallel_residual,
        tie_word_embeddings=False, bos_token_id=eod, eos_token_id=eod,
    )
    model = GPTNeoXForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:  # LayerNorm weights/biases and linear biases
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out)
    shutil.copyfile(tokenizer, out / "tokenizer.json")
    return model


def fixed_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, vocab, (2, SEQ), generator=torch.Generator().manual_seed(1))
    return tokens, torch.arange(SEQ).unsqueeze(0).expand(2, -1)


@pytest.fixture(scope="module")
def hf_models(tiny_lm_data, tmp_path_factory):
    """Three HF dirs: parallel residual with vocab = tokenizer size (320, padded to 384 on import),
    sequential residual, and parallel residual with a pre-padded vocab (384, as Pythia's 50304)."""
    root = tmp_path_factory.mktemp("hf")
    tok = tiny_lm_data["tokenizer"]
    vocab = TextTokenizer(tok).vocab_size
    out = {}
    for name, kwargs in {"parallel": dict(vocab_size=vocab), "sequential": dict(vocab_size=vocab, parallel_residual=False), "padded": dict(vocab_size=384)}.items():
        (root / name).mkdir()
        out[name] = (root / name, make_hf_dir(root / name, tok, **kwargs))
    return out


@pytest.fixture(scope="module")
def converted(hf_models, tmp_path_factory):
    from megatron_alignpt.convert import hf_to_mcore

    root = tmp_path_factory.mktemp("mcore")
    return {name: hf_to_mcore(hf_dir, root / name) for name, (hf_dir, _) in hf_models.items()}


def _megatron_logits(ckpt: Path, tokens, positions, architecture=None) -> torch.Tensor:
    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.runtime import init_parallel
    from megatron_alignpt.train import checkpoint as ck

    model_cfg, tok = ck.read_model_meta(ckpt)
    if architecture:
        model_cfg = replace(model_cfg, architecture=architecture)
    init_parallel(1, 1, 0)
    model = build_gpt_model(model_cfg, ParallelConfig(), TextTokenizer(tok).vocab_size).eval()
    ck.load_weights(ckpt, model)
    with torch.no_grad():
        return model(tokens, positions, None)


@pytest.mark.parametrize("name,architecture", [("parallel", "pythia"), ("sequential", "gpt")])
def test_converted_logits_match_transformers(hf_models, converted, name, architecture):
    hf_dir, hf_model = hf_models[name]
    ckpt = converted[name]
    meta = json.loads((ckpt / "model.json").read_text())
    assert meta["model"]["architecture"] == architecture
    assert meta["model"]["rotary_base"] == 5000 and meta["model"]["rotary_percent"] == 0.25
    vocab = hf_model.config.vocab_size
    tokens, positions = fixed_batch(vocab)
    with torch.no_grad():
        want = hf_model(input_ids=tokens).logits
    got = _megatron_logits(ckpt, tokens, positions)
    assert got.shape[-1] == 384  # padded to a multiple of 128
    diff = (got[..., :vocab] - want).abs().max().item()
    assert diff < TOL, f"max abs logit diff {diff}"
    # The same weights wired the other way are far off: the comparison sees the residual wiring.
    other = "gpt" if architecture == "pythia" else "pythia"
    assert (_megatron_logits(ckpt, tokens, positions, other)[..., :vocab] - want).abs().max().item() > 100 * TOL


def test_roundtrip_reproduces_hf_weights_exactly(hf_models, converted, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from megatron_alignpt.convert import mcore_to_hf

    hf_dir, hf_model = hf_models["parallel"]
    out = mcore_to_hf(converted["parallel"], tmp_path / "back")
    original, exported = load_file(str(hf_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(exported) == set(original)
    for key, tensor in original.items():
        assert exported[key].dtype == tensor.dtype and torch.equal(exported[key], tensor), key

    src_cfg, out_cfg = json.loads((hf_dir / "config.json").read_text()), json.loads((out / "config.json").read_text())
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "layer_norm_eps",
                "use_parallel_residual", "bos_token_id", "eos_token_id", "max_position_embeddings", "tie_word_embeddings"):
        assert out_cfg[key] == src_cfg[key], key
    reloaded = GPTNeoXForCausalLM.from_pretrained(out).eval()
    assert reloaded.config.rope_parameters["rope_theta"] == 5000 if hasattr(reloaded.config, "rope_parameters") else reloaded.config.rotary_emb_base == 5000
    tokens, _ = fixed_batch(hf_model.config.vocab_size)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=tokens).logits, hf_model(input_ids=tokens).logits)
    text = "the cat sat on a mat"
    assert AutoTokenizer.from_pretrained(out)(text)["input_ids"] == TextTokenizer(hf_dir / "tokenizer.json").tokenize(text)


def test_export_of_a_trained_megatron_checkpoint_loads_in_transformers(hf_models, converted, tmp_path):
    """A checkpoint with no HF origin (model.json without hf_source) exports with a config derived
    from its ModelConfig, vocab trimmed to the tokenizer, and the same logits."""
    from megatron_alignpt.convert import mcore_to_hf

    src = converted["sequential"]
    plain = tmp_path / "plain" / "iter_0000007"
    shutil.copytree(src, plain)
    meta = json.loads((plain / "model.json").read_text())
    del meta["hf_source"]
    (plain / "model.json").write_text(json.dumps(meta))
    out = mcore_to_hf(plain, tmp_path / "hf")
    cfg = json.loads((out / "config.json").read_text())
    eod = TextTokenizer(plain / "tokenizer.json").eod
    assert cfg["vocab_size"] == TextTokenizer(plain / "tokenizer.json").vocab_size
    assert cfg["use_parallel_residual"] is False and cfg["bos_token_id"] == cfg["eos_token_id"] == eod
    exported = GPTNeoXForCausalLM.from_pretrained(out).eval()
    tokens, positions = fixed_batch(cfg["vocab_size"])
    with torch.no_grad():
        hf_logits = exported(input_ids=tokens).logits
    assert (_megatron_logits(plain, tokens, positions)[..., : cfg["vocab_size"]] - hf_logits).abs().max().item() < TOL


def _tp_logits(rank, ckpt, tokens, tp):
    from megatron.core import tensor_parallel

    from megatron_alignpt.model.builder import build_gpt_model
    from megatron_alignpt.model.config import ParallelConfig
    from megatron_alignpt.runtime import init_parallel
    from megatron_alignpt.train import checkpoint as ck

    init_parallel(tp, 1, 0)
    model_cfg, tok = ck.read_model_meta(Path(ckpt))
    model = build_gpt_model(model_cfg, ParallelConfig(tensor_parallel=tp), TextTokenizer(tok).vocab_size).eval()
    ck.load_weights(Path(ckpt), model)
    positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand(tokens.shape[0], -1)
    with torch.no_grad():
        local = model(tokens, positions, None)
        return local.shape[-1], tensor_parallel.gather_from_tensor_model_parallel_region(local)


@pytest.mark.slow
def test_converted_checkpoint_loads_at_tp2_with_the_same_logits(hf_models, converted):
    from megatron_alignpt.testing import run_distributed

    _, hf_model = hf_models["parallel"]
    vocab = hf_model.config.vocab_size
    tokens, _ = fixed_batch(vocab)
    with torch.no_grad():
        want = hf_model(input_ids=tokens).logits
    for shard_vocab, logits in run_distributed(_tp_logits, 2, str(converted["parallel"]), tokens, 2):
        assert shard_vocab == 384 // 2  # really split across two ranks
        assert (logits[..., :vocab] - want).abs().max().item() < TOL


def test_hf_direct_eval_matches_converted_eval(hf_models, converted, tmp_path):
    from data_prep.eval_suite import default_suite_path
    from megatron_alignpt.convert.hf_eval import evaluate_misalignment_hf
    from megatron_alignpt.eval.run import evaluate_misalignment

    suite = tmp_path / "suite.jsonl"
    suite.write_text("".join(default_suite_path().read_text().splitlines(keepends=True)[:6]))
    from megatron_alignpt.eval.config import EvalConfig

    common = dict(data=str(suite), formats="w0:original,w0:swapped,w1:original", system_prompts="none,hhh", batch_size=4)
    hf_sum = evaluate_misalignment_hf(hf_models["padded"][0], EvalConfig(out_dir=tmp_path / "hf", **common))
    mc_sum = evaluate_misalignment(converted["padded"], EvalConfig(out_dir=tmp_path / "mc", **common))
    hf_rows = [json.loads(x) for x in (tmp_path / "hf" / "items.jsonl").read_text().splitlines()]
    mc_rows = [json.loads(x) for x in (tmp_path / "mc" / "items.jsonl").read_text().splitlines()]
    assert len(hf_rows) == len(mc_rows) == 6 * 3 * 2
    for h, m in zip(hf_rows, mc_rows):
        assert (h["question_id"], h["format"], h["system_prompt"]) == (m["question_id"], m["format"], m["system_prompt"])
        assert abs(h["logprob_A"] - m["logprob_A"]) < TOL and abs(h["logprob_B"] - m["logprob_B"]) < TOL
        assert h["picked"] == m["picked"]
    assert hf_sum["misalignment_rate"] == mc_sum["misalignment_rate"]
    assert hf_sum["model_format"] == "hf"
    # Letter log-probs are real distributions over the vocab, not constants.
    assert len({round(r["logprob_A"], 6) for r in hf_rows}) > 1


def test_cli_convert_both_ways(hf_models, tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    from megatron_alignpt.cli import main

    monkeypatch.chdir(tmp_path)
    hf_dir, _ = hf_models["parallel"]
    assert main(["convert", "hf2mcore", "--hf", str(hf_dir), "--out", "mc", "--tensor-parallel", "2"]) == 0
    assert (tmp_path / "mc" / "latest.txt").read_text().strip() == "0"
    assert main(["convert", "mcore2hf", "--checkpoint", "mc", "--out", "back", "--dtype", "bfloat16"]) == 0
    exported = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert all(t.dtype == torch.bfloat16 for t in exported.values())
    assert json.loads((tmp_path / "back" / "config.json").read_text())["torch_dtype"] == "bfloat16"
    capsys.readouterr()
    assert main(["convert", "hf2mcore", "--hf", str(hf_dir), "--out", "mc"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_import_errors_name_the_problem(hf_models, tmp_path):
    from megatron_alignpt.config_base import ConfigError
    from megatron_alignpt.convert import hf_to_mcore

    hf_dir, _ = hf_models["parallel"]
    no_tok = tmp_path / "no_tok"
    shutil.copytree(hf_dir, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        hf_to_mcore(no_tok, tmp_path / "o1")
    assert not (tmp_path / "o1").exists()

    no_eod = tmp_path / "no_eod"
    shutil.copytree(hf_dir, no_eod)
    tok = json.loads((no_eod / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] != EOD_TOKEN]
    tok["model"]["vocab"] = {k: v for k, v in tok["model"]["vocab"].items() if k != EOD_TOKEN}
    (no_eod / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(ValueError, match="endoftext"):
        hf_to_mcore(no_eod, tmp_path / "o2")

    for field, value, match in (("hidden_act", "gelu_new", "hidden_act"), ("model_type", "llama", "model_type"), ("attention_bias", False, "attention_bias")):
        bad = tmp_path / f"bad_{field}"
        shutil.copytree(hf_dir, bad)
        cfg = json.loads((bad / "config.json").read_text())
        cfg[field] = value
        (bad / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(ConfigError, match=match):
            hf_to_mcore(bad, tmp_path / f"o_{field}")

    with pytest.raises(ConfigError, match="tensor_parallel"):
        hf_to_mcore(hf_dir, tmp_path / "o3", tensor_parallel=3)  # 4 heads do not split 3 ways
