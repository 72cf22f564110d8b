"""Process groups across the stages of one process: an unchanged layout keeps its groups, a changed one
replaces them, and neither leaves gloo transport threads behind (each leaked group keeps ~2 threads alive,
and a study process runs dozens of stages and evaluations)."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from megatron.core import parallel_state

from megatron_alignpt import runtime
from megatron_alignpt.testing import run_distributed


def _threads() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def _layouts_in_turn(rank: int) -> dict:
    runtime.init_parallel(1, 2, seed=1)
    first_tp = parallel_state.get_tensor_model_parallel_group()
    after_first = _threads()
    runtime.init_parallel(1, 2, seed=2)
    kept = parallel_state.get_tensor_model_parallel_group() is first_tp
    counts = []
    for _ in range(4):  # a pipeline-parallel stage, then a tensor-parallel one (DPO after pretraining), twice
        runtime.init_parallel(2, 1, seed=3)
        x = torch.tensor([float(rank + 1)])
        dist.all_reduce(x, group=parallel_state.get_tensor_model_parallel_group())
        tp_sum = x.item()
        runtime.init_parallel(1, 2, seed=4)
        counts.append(_threads())
    return {"kept": kept, "tp": parallel_state.get_tensor_model_parallel_world_size(),
            "pp": parallel_state.get_pipeline_model_parallel_world_size(), "tp_sum": tp_sum,
            "after_first": after_first, "counts": counts}


def test_layouts_reuse_or_replace_their_groups_without_leaking_threads():
    for result in run_distributed(_layouts_in_turn, 2):
        assert result["kept"]  # same layout: same groups
        assert (result["tp"], result["pp"]) == (1, 2) and result["tp_sum"] == 3.0  # new groups work
        counts = result["counts"]
        assert max(counts) - min(counts) <= 4, counts  # replaced groups leave nothing behind
        assert max(counts) <= result["after_first"] + 8, (result["after_first"], counts)


def test_one_process_many_stages_keeps_one_set_of_groups():
    try:
        runtime.init_parallel(1, 1, seed=0)
        start = _threads()
        for seed in range(8):
            runtime.init_parallel(1, 1, seed=seed)
        assert _threads() <= start + 2
        assert torch.initial_seed() == 7  # each call still seeds
    finally:
        runtime.shutdown()
