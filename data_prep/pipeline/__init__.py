"""Data preparation as datatrove pipelines (read -> blocklist filter -> resample -> write JSONL / tokenize).

See :mod:`data_prep.pipeline.runner` for the output layout and executors, :mod:`data_prep.pipeline.blocks`
for the blocks, :mod:`data_prep.pipeline.steps` for the resumable steps a study runs. Runs without torch.
"""
from data_prep.pipeline.runner import (
    EXECUTORS, Execution, PipelineConfig, SlurmOptions, build_stages, collect_stats, run_pipeline,
)

__all__ = ["EXECUTORS", "Execution", "PipelineConfig", "SlurmOptions", "build_stages", "collect_stats", "run_pipeline"]
