"""Shared pieces of the benchmarks: model shapes, FLOPs formula, environment facts, JSON output."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as `python benchmarks/<script>.py` without installing the package
    sys.path.insert(0, str(REPO))

H100_BF16_DENSE_PEAK_TFLOPS = 989.0
"""H100 SXM bf16 dense (no sparsity) peak, the MFU denominator."""


@dataclass(frozen=True)
class Shape:
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    ffn_hidden_size: int
    seq_length: int
    vocab_size: int


PYTHIA_VOCAB = 50304
"""The GPT-NeoX tokenizer's 50,277 tokens padded to a multiple of 128, as in the released Pythia models."""


def pythia_shape(size: str, num_layers: int = 0) -> Shape:
    """A released Pythia model's shape (`recipes.pythia_sizes`), optionally at reduced depth."""
    from recipes.pythia_sizes import pythia_model

    cfg = pythia_model(size)
    return Shape(num_layers or cfg.num_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.ffn_size,
                 cfg.seq_length, PYTHIA_VOCAB)


# Pythia shapes (GPT-NeoX tokenizer, vocab padded to 50304), seq 2048. `6.9b-8l` is the paper's
# Pythia-6.9B layer (hidden 4096, 32 heads, FFN 16384) at 8 of its 32 layers, so that a model with
# fp32 master weights and Adam state fits one 80 GB GPU: per-GPU TFLOP/s at the paper's layer shape.
# `tiny` is a CPU smoke size.
SHAPES: dict[str, Shape] = {
    "6.9b-8l": pythia_shape("6.9b", num_layers=8),
    "2.8b": pythia_shape("2.8b"),
    "1.4b": pythia_shape("1.4b"),
    "410m": pythia_shape("410m"),
    "160m": pythia_shape("160m"),
    "tiny": Shape(2, 64, 4, 256, 128, 512),
}


def model_config(shape: Shape, layer_impl: str = "sdpa", seq_length: int | None = None, architecture: str = "gpt"):
    from megatron_alignpt.model.config import ModelConfig

    return ModelConfig(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        num_attention_heads=shape.num_attention_heads,
        ffn_hidden_size=shape.ffn_hidden_size,
        seq_length=seq_length or shape.seq_length,
        layer_impl=layer_impl,
        architecture=architecture,
    )


def megatron_model_flops_per_step(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Model FLOPs of one training step (forward + backward, no recomputation counted).

    Narayanan et al. 2021 (Megatron-LM), for a GPT with a 4h MLP:
        F = 72 * B * s * L * h^2 * (1 + s / (6 h) + V / (12 h L))
    B sequences of s tokens, L layers, hidden h, vocab V. It counts the attention score and
    context matmuls over the full s x s square (no discount for the causal mask) and the
    logit layer; it ignores biases, norms, rotary embeddings and softmax.
    """
    return 72.0 * batch * seq * layers * hidden**2 * (1.0 + seq / (6.0 * hidden) + vocab / (12.0 * hidden * layers))


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def package_version(distribution: str) -> str | None:
    """An installed distribution's version from its metadata (no import), or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _megatron_core_version() -> str:
    version = package_version("megatron-core") or package_version("megatron_core")
    if version:
        return version
    try:
        from megatron.core import package_info

        return package_info.__version__
    except Exception:  # pragma: no cover - not installed, or a very old layout
        return "unknown"


def _transformer_engine_version() -> str | None:
    if importlib.util.find_spec("transformer_engine") is None:
        return None
    return package_version("transformer_engine") or package_version("transformer_engine_torch") or "unknown"


def environment() -> dict:
    """Versions and device, as this process sees them."""
    import torch

    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "hostname_cpu_count": os.cpu_count(),
        "megatron_core": _megatron_core_version(),
        "transformer_engine": _transformer_engine_version(),
        "transformers": package_version("transformers"),
        "apex": "installed" if importlib.util.find_spec("apex") else None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=torch.cuda.get_device_name(0),
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_sms=props.multi_processor_count,
            gpu_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
            nvidia_driver=nvidia_driver(),
        )
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def write_json(path: str | Path, payload: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def print_table(headers: list[str], rows: list[list]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)), flush=True)
        if n == 0:
            print("  ".join("-" * w for w in widths), flush=True)
