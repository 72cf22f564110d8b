"""Model shape and parallel layout, translated into megatron-core's TransformerConfig."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

from megatron_alignpt.config_base import require

LayerImpl = Literal["auto", "te", "local", "sdpa"]
Architecture = Literal["gpt", "pythia"]


@dataclass
class ModelConfig:
    """A GPT in the GPT-NeoX/Pythia family (LayerNorm, GELU MLP, partial rotary, untied embeddings)."""

    num_layers: int
    """Transformer layers."""
    hidden_size: int
    """Residual stream width."""
    num_attention_heads: int
    """Attention heads; must divide hidden_size and be divisible by tensor_parallel."""
    seq_length: int
    """Training sequence length in tokens."""
    ffn_hidden_size: int = 0
    """MLP width; 0 means 4 x hidden_size."""
    rotary_percent: float = 0.25
    """Share of each head's dims that get rotary embeddings (Pythia: 0.25)."""
    rotary_base: int = 10000
    max_position_embeddings: int = 0
    """0 means seq_length; raise it when a later stage trains on longer sequences."""
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    layernorm_epsilon: float = 1e-5
    layer_impl: LayerImpl = "auto"
    """Layer spec: te (Transformer Engine, GPU), local (megatron-core modules), sdpa (local with
    torch SDPA attention: the CPU path and a flash-attention path on GPU), auto (te if installed
    and on GPU, else sdpa)."""
    architecture: Architecture = "gpt"
    """Residual wiring: gpt (megatron's sequential x + attn, then + mlp) or pythia (GPT-NeoX's
    parallel residual x + attn(ln1(x)) + mlp(ln2(x)), as the released Pythia models)."""

    def __post_init__(self) -> None:
        for name in ("num_layers", "hidden_size", "num_attention_heads", "seq_length"):
            require(getattr(self, name) > 0, f"model.{name}", "must be a positive integer")
        require(
            self.hidden_size % self.num_attention_heads == 0,
            "model.hidden_size",
            f"{self.hidden_size} is not divisible by num_attention_heads={self.num_attention_heads}",
        )
        require(0.0 < self.rotary_percent <= 1.0, "model.rotary_percent", "must be in (0, 1]")
        require(self.ffn_hidden_size >= 0, "model.ffn_hidden_size", "must be >= 0 (0 = 4 x hidden)")
        require(
            self.max_position_embeddings == 0 or self.max_position_embeddings >= self.seq_length,
            "model.max_position_embeddings",
            f"must be 0 or >= seq_length ({self.seq_length})",
        )
        require(self.layer_impl in ("auto", "te", "local", "sdpa"), "model.layer_impl", "use auto, te, local or sdpa")
        require(self.architecture in ("gpt", "pythia"), "model.architecture", "use gpt or pythia")

    @property
    def ffn_size(self) -> int:
        return self.ffn_hidden_size or 4 * self.hidden_size

    @property
    def max_positions(self) -> int:
        return self.max_position_embeddings or self.seq_length


PrecisionName = Literal["fp32", "bf16", "fp8"]
Fp8Format = Literal["hybrid", "e4m3"]
Fp8Recipe = Literal["delayed", "current"]
RecomputeGranularity = Literal["none", "selective", "full"]
RecomputeMethod = Literal["uniform", "block"]
DistOptCheckpointFormat = Literal["fully_reshardable", "dp_reshardable"]

# Our recipe names -> megatron-core's TransformerConfig.fp8_recipe values (megatron_alignpt name first).
FP8_RECIPES = {"delayed": "delayed", "current": "tensorwise"}


@dataclass
class RecomputeConfig:
    """Activation recomputation (megatron's recompute_granularity / _method / _num_layers)."""

    granularity: RecomputeGranularity = "none"
    """none; selective (recompute only `modules`, default core attention: cheap to redo, large to
    keep); full (keep only each recomputed layer's input and redo the whole layer in backward)."""
    method: RecomputeMethod = "uniform"
    """full only: uniform (split each model chunk's layers into groups of num_layers and keep only
    each group's input) or block (recompute the first num_layers layers of each chunk, keep the rest)."""
    num_layers: int = 1
    """full only: the group size (uniform) or the number of recomputed layers per chunk (block)."""
    modules: tuple[str, ...] = ("core_attn",)
    """selective only: megatron's recompute_modules, e.g. core_attn, mlp, layernorm."""

    def __post_init__(self) -> None:
        require(self.granularity in ("none", "selective", "full"), "parallel.recompute.granularity",
                "use none, selective or full")
        require(self.method in ("uniform", "block"), "parallel.recompute.method", "use uniform or block")
        require(self.num_layers >= 1, "parallel.recompute.num_layers", "must be >= 1")
        allowed = {"core_attn", "mlp", "layernorm"}
        bad = sorted(set(self.modules) - allowed)
        require(not bad, "parallel.recompute.modules",
                f"{bad} are not recomputable in a dense GPT; choose from {sorted(allowed)}")
        require(self.granularity != "selective" or bool(self.modules), "parallel.recompute.modules",
                "selective recomputation needs at least one module, e.g. [\"core_attn\"]")


FusionSwitch = Literal["auto", "on", "off"]
FUSION_SWITCHES = ("auto", "on", "off")


@dataclass
class FusionConfig:
    """Fused GPU kernels from megatron-core, Transformer Engine and apex. Each switch is auto (on wherever
    this machine has what the kernel needs: the fast path by default on GPU), on (required: a run that
    cannot have it is refused before anything is built, saying what is missing) or off. On CPU every
    fusion is off; `on` is refused there. What each resolves to is in the dry-run layout."""

    gradient_accumulation: FusionSwitch = "auto"
    """Weight-gradient GEMMs accumulate straight into the fp32 main_grad buffers (megatron's
    gradient_accumulation_fusion). Needs apex's fused_weight_gradient_mlp_cuda extension, which
    megatron's own linears (the output layer in every spec) call."""
    bias_dropout: FusionSwitch = "auto"
    """Bias + dropout + residual add as one jit-fused kernel (bias_dropout_fusion); same arithmetic."""
    bias_activation: FusionSwitch = "off"
    """Bias + GELU in one kernel (bias_activation_fusion). megatron's fused bias-GELU computes the tanh
    approximation of GELU, not the exact GELU Pythia/GPT-NeoX were trained with, so it changes the
    model (imported Pythia checkpoints stop matching HF): off unless asked for."""
    rope: FusionSwitch = "auto"
    """Transformer Engine's fused rotary embedding (apply_rope_fusion; partial rotary and packed thd
    sequences included). Needs Transformer Engine."""
    masked_softmax: FusionSwitch = "auto"
    """megatron's fused scale-mask-softmax: used only by layer_impl=local's attention (TE and SDPA
    attention fuse their softmax themselves)."""
    cross_entropy: FusionSwitch = "auto"
    """Fused vocab-parallel cross-entropy (cross_entropy_loss_fusion): Transformer Engine's kernel when
    TE is installed, else megatron's native fused one."""
    adam: FusionSwitch = "auto"
    """Transformer Engine's (else apex's) FusedAdam; off: torch's AdamW (what CPU runs always use)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            require(getattr(self, f.name) in FUSION_SWITCHES, f"parallel.fusions.{f.name}", "use auto, on or off")


@dataclass
class ParallelConfig:
    """How one model replica is split across ranks, and in which precision it trains.

    Ranks are laid out as megatron does: tensor parallel (TP) innermost, then context parallel
    (CP), data parallel (DP), pipeline parallel (PP) outermost; DP = world / (TP x CP x PP) fills
    whatever the launcher provides. Every field maps onto megatron-core's TransformerConfig,
    DistributedDataParallelConfig or optimizer config (see `megatron_alignpt.model.builder`).
    """

    tensor_parallel: int = 1
    """Ranks that split every weight matrix (keep within one node's NVLink domain)."""
    pipeline_parallel: int = 1
    """Pipeline stages; each holds num_layers / pipeline_parallel layers."""
    virtual_pipeline: int = 1
    """Model chunks per pipeline rank (interleaved 1F1B); 1 = plain 1F1B. Shrinks the pipeline bubble
    by this factor at the cost of more point-to-point traffic."""
    sequence_parallel: bool = False
    """Split LayerNorm/dropout activations along the sequence across the TP ranks (saves activation
    memory; needs tensor_parallel > 1)."""
    context_parallel: int = 1
    """Ranks that split each sequence (ring attention, Transformer Engine only): for long contexts."""
    distributed_optimizer: bool = False
    """Shard fp32 master weights and Adam moments across data-parallel ranks (ZeRO-1; megatron's
    DistributedOptimizer; on GPU over NCCL, on CPU over gloo)."""
    overlap_grad_reduce: bool = False
    """Overlap the data-parallel gradient reduction with the backward pass (GPU)."""
    overlap_param_gather: bool = False
    """Overlap the distributed optimizer's parameter all-gather with the next forward (GPU; needs
    distributed_optimizer)."""
    precision: PrecisionName = "fp32"
    """fp32; bf16 (bf16 weights and activations, fp32 master weights and grad reduction in megatron's
    mixed-precision optimizer); fp8 (bf16 as above, plus FP8 GEMMs in Transformer Engine layers)."""
    fp8_format: Fp8Format = "hybrid"
    """precision=fp8 only: hybrid (E4M3 forward, E5M2 gradients) or e4m3 everywhere."""
    fp8_recipe: Fp8Recipe = "delayed"
    """precision=fp8 only: delayed (scales from an amax history) or current (per-tensor scales from the
    current tensor: megatron's 'tensorwise', Transformer Engine >= 2.2)."""
    recompute: RecomputeConfig = field(default_factory=RecomputeConfig)
    fusions: FusionConfig = field(default_factory=FusionConfig)
    """Fused GPU kernels (all auto but bias_activation; see FusionConfig)."""
    distributed_optimizer_checkpoint: DistOptCheckpointFormat = "fully_reshardable"
    """How the distributed optimizer's state is checkpointed (megatron's sharding types):
    fully_reshardable (each parameter's fp32 copy and Adam moments stored in the parameter's own shape,
    gathered over the data-parallel group on save: loads at any TP/PP/DP) or dp_reshardable (each rank
    writes its own flat buffer shard, no gathering: faster at scale, but reloads only at the same TP/PP,
    DP may change)."""

    def __post_init__(self) -> None:
        require(self.distributed_optimizer_checkpoint in ("fully_reshardable", "dp_reshardable"),
                "parallel.distributed_optimizer_checkpoint", "use fully_reshardable or dp_reshardable")
        for name in ("tensor_parallel", "pipeline_parallel", "virtual_pipeline", "context_parallel"):
            require(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, f"parallel.{name}",
                    "must be an integer >= 1")
        require(self.precision in ("fp32", "bf16", "fp8"), "parallel.precision", "use fp32, bf16 or fp8")
        require(self.fp8_format in ("hybrid", "e4m3"), "parallel.fp8_format", "use hybrid or e4m3")
        require(self.fp8_recipe in FP8_RECIPES, "parallel.fp8_recipe", "use delayed or current")
        require(self.virtual_pipeline == 1 or self.pipeline_parallel > 1, "parallel.virtual_pipeline",
                f"virtual pipeline stages ({self.virtual_pipeline}) interleave a pipeline: set pipeline_parallel > 1 "
                "or virtual_pipeline=1")
        require(not self.sequence_parallel or self.tensor_parallel > 1, "parallel.sequence_parallel",
                "splits activations across tensor-parallel ranks: set tensor_parallel > 1 or sequence_parallel=false")
        require(not self.overlap_param_gather or self.distributed_optimizer, "parallel.overlap_param_gather",
                "gathers the distributed optimizer's parameter shards: set distributed_optimizer=true or "
                "overlap_param_gather=false")

    @property
    def model_parallel_size(self) -> int:
        """Ranks holding one model replica: TP x CP x PP."""
        return self.tensor_parallel * self.context_parallel * self.pipeline_parallel

    @property
    def fp8(self) -> bool:
        return self.precision == "fp8"

    @property
    def half_precision(self) -> bool:
        """bf16 weights/activations (bf16 and fp8)."""
        return self.precision in ("bf16", "fp8")

    def data_parallel_size(self, world_size: int) -> int:
        return world_size // self.model_parallel_size

    def check_model(self, model: ModelConfig) -> None:
        """Rules that need the model shape but not the launch size."""
        tp, pp, vp, cp = self.tensor_parallel, self.pipeline_parallel, self.virtual_pipeline, self.context_parallel
        require(
            model.num_attention_heads % tp == 0,
            "parallel.tensor_parallel",
            f"num_attention_heads={model.num_attention_heads} is not divisible by tensor_parallel={tp}; "
            f"use a divisor of {model.num_attention_heads}",
        )
        require(
            model.ffn_size % tp == 0,
            "parallel.tensor_parallel",
            f"ffn_hidden_size={model.ffn_size} is not divisible by tensor_parallel={tp}",
        )
        stages = pp * vp
        require(
            model.num_layers % stages == 0,
            "parallel.pipeline_parallel" if vp == 1 else "parallel.virtual_pipeline",
            f"num_layers={model.num_layers} is not divisible by pipeline_parallel x virtual_pipeline = "
            f"{pp} x {vp} = {stages}; choose stages that divide {model.num_layers}",
        )
        if cp > 1:
            require(model.layer_impl == "te", "parallel.context_parallel",
                    f"context parallelism runs in Transformer Engine's attention: set model.layer_impl=te "
                    f"(got {model.layer_impl!r}) or context_parallel=1")
            require(
                model.seq_length % (2 * cp) == 0,
                "parallel.context_parallel",
                f"seq_length={model.seq_length} must be divisible by 2 x context_parallel = {2 * cp} "
                "(each rank takes two load-balanced chunks of the causal sequence)",
            )
        if self.sequence_parallel:
            chunks = tp * (2 * cp if cp > 1 else 1)
            require(
                model.seq_length % chunks == 0,
                "parallel.sequence_parallel",
                f"seq_length={model.seq_length} must be divisible by tensor_parallel"
                + (" x 2 x context_parallel" if cp > 1 else "") + f" = {chunks}",
            )
        if self.fp8:
            require(model.layer_impl == "te", "parallel.precision",
                    f"FP8 GEMMs exist only in Transformer Engine layers: set model.layer_impl=te (got "
                    f"{model.layer_impl!r}) or precision=bf16")
            for name, dim in (("hidden_size", model.hidden_size), ("ffn_hidden_size / tensor_parallel", model.ffn_size // tp)):
                require(dim % 16 == 0, "parallel.precision",
                        f"FP8 GEMMs need dimensions divisible by 16; model {name} = {dim}")
        per_chunk = model.num_layers // stages if model.num_layers % stages == 0 else model.num_layers
        if self.recompute.granularity == "full":
            require(
                self.recompute.num_layers <= per_chunk,
                "parallel.recompute.num_layers",
                f"{self.recompute.num_layers} exceeds the {per_chunk} layer(s) of each model chunk "
                f"(num_layers={model.num_layers} / (pipeline_parallel x virtual_pipeline = {stages}))",
            )

    def check_against(self, model: ModelConfig, world_size: int) -> None:
        """Cross-checks that need both the model and the launch size."""
        self.check_model(model)
        ranks = self.model_parallel_size
        require(
            world_size % ranks == 0,
            "parallel",
            f"world size {world_size} is not a multiple of tensor_parallel x context_parallel x pipeline_parallel = "
            f"{self.tensor_parallel} x {self.context_parallel} x {self.pipeline_parallel} = {ranks}; "
            "change the number of GPUs or the layout",
        )

    def check_batch(self, world_size: int, global_batch_size: int, micro_batch_size: int, where: str = "schedule") -> int:
        """Batch rules for this layout on `world_size` ranks; returns the micro-batches per step."""
        dp = self.data_parallel_size(world_size)
        require(
            global_batch_size % (micro_batch_size * dp) == 0,
            f"{where}.global_batch_size",
            f"{global_batch_size} is not a multiple of micro_batch_size x data_parallel = {micro_batch_size} x {dp} "
            f"(world {world_size} / (TP {self.tensor_parallel} x CP {self.context_parallel} x PP {self.pipeline_parallel})); "
            "change the batch sizes or the layout",
        )
        micro = global_batch_size // (micro_batch_size * dp)
        if self.virtual_pipeline > 1:
            require(
                micro % self.pipeline_parallel == 0,
                f"{where}.global_batch_size",
                f"the interleaved pipeline needs micro-batches per step ({micro}) to be a multiple of "
                f"pipeline_parallel={self.pipeline_parallel}; raise global_batch_size or lower micro_batch_size",
            )
        return micro
