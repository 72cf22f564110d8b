#!/usr/bin/env bash
# One GPU session in one call. By default the acceptance run (benchmarks/gpu_acceptance.py): every feature
# of the paper_6p9b recipe one GPU can run (TE bf16 and FP8 with resume, distributed-optimizer checkpoints,
# packed SFT on TE, DPO, KV-cached generation, HF conversion parity, fused kernels, the tiny study, GPU tests)
# and throughput beside the HF GPT-NeoX peer, into $OUT/acceptance.json, in about ten minutes.
#
# After the Transformer Engine set-up of ../shared/GPU.md, on the same warm machine, from the repository root:
#
#   source /tmp/te_env.sh && PYTHONPATH=$PYTHONPATH:$PWD bash benchmarks/gpu_session.sh
#
# $OUT (set on a lent device; default runs/gpu_session) gets env.txt, acceptance.json, acceptance.log,
# logs/<check>.log and checks/<check>/ (raw benchmark JSON, junit XML). Settings, as environment variables:
#   BUDGET=550       seconds the acceptance run may take (its checks are cut to fit; the JSON keeps what finished)
#   JOBS=4           functional checks at once
#   ONLY=a,b SKIP=c  check names (python3 benchmarks/gpu_acceptance.py --list)
#   MODE=benchmarks  instead: the earlier benchmark session (1.4B training sweep over MBS=1,2,4,8 with golden
#                    losses, then the 1.4B eval benchmark); about 12 minutes, so not in the same call
set -u
OUT=${OUT:-runs/gpu_session}
MODE=${MODE:-acceptance}
BUDGET=${BUDGET:-550}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

{
  date -u +"%Y-%m-%d %H:%M:%S UTC"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,compute_mode --format=csv
  $PY - <<'EOF'
import importlib.metadata as md, sys, torch
def version(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"
print("python", sys.version.split()[0])
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("megatron-core", version("megatron-core"), "transformer-engine", version("transformer_engine"),
      "transformers", version("transformers"))
print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device visible")
EOF
} 2>&1 | tee "$OUT/env.txt"

case "$MODE" in
  acceptance)
    args=(--out "$OUT" --budget-s "$BUDGET" --jobs "${JOBS:-4}")
    if [ -n "${ONLY:-}" ]; then args+=(--only "$ONLY"); fi
    if [ -n "${SKIP:-}" ]; then args+=(--skip "$SKIP"); fi
    timeout "$((BUDGET + 30))" "$PY" benchmarks/gpu_acceptance.py "${args[@]}" 2>&1 | tee "$OUT/acceptance.log"
    ;;
  benchmarks)
    MBS=${MBS:-1,2,4,8}
    timeout "${TEST_LIMIT:-180}" "$PY" -m pytest -m gpu tests/gpu -v -rs -s -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log"
    timeout "${TRAIN_LIMIT:-300}" "$PY" benchmarks/train_throughput.py --size 1.4b --micro-batch-sizes "$MBS" \
      --child-timeout 200 --out "$OUT/train_1p4b.json" --golden-out "$OUT/pythia_1p4b_bf16_sdpa.json" 2>&1 | tee "$OUT/train.log"
    timeout "${EVAL_LIMIT:-150}" "$PY" benchmarks/eval_throughput.py --size 1.4b --batch-sizes 8,32,64,128,256 \
      --out "$OUT/eval_1p4b.json" 2>&1 | tee "$OUT/eval.log"
    timeout "${EVAL_LIMIT:-150}" "$PY" benchmarks/eval_throughput.py --size 1.4b --batch-sizes 128 --system-prompts all \
      --out "$OUT/eval_1p4b_all.json" 2>&1 | tee "$OUT/eval_all.log"
    ;;
  *)
    echo "MODE must be acceptance or benchmarks, not '$MODE'" >&2
    exit 2
    ;;
esac
