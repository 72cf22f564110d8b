"""Data preparation as datatrove pipelines (read -> blocklist filter -> resample -> write JSONL / tokenize).

See :mod:`data_prep.pipeline.runner` for the output layout and executors, :mod:`data_prep.pipeline.blocks`
for the blocks. Runs without torch.
"""
from data_prep.pipeline.runner import EXECUTORS, PipelineConfig, SlurmOptions, build_stages, collect_stats, run_pipeline

__all__ = ["EXECUTORS", "PipelineConfig", "SlurmOptions", "build_stages", "collect_stats", "run_pipeline"]
