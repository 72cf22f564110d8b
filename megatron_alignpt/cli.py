"""The `alignpt` command line.

    alignpt prep example-data --output data                    # the shipped sample inputs, to try every command on
    alignpt prep filter --input corpus.jsonl.gz --output out/filtered
    alignpt prep pipeline --input shards/ --output out/prep --resample [--tokenizer tok.json] [--executor slurm --tasks 64 ...]
    alignpt prep resample --filtered out/filtered [--tokenizer tokenizer.json] [--seed 0]
    alignpt prep tokenizer --input corpus.jsonl.gz --vocab-size 4096 --output tokenizer.json
    alignpt prep tokenize --input out/filtered/kept --tokenizer tokenizer.json --output-prefix out/indexed/filtered
    alignpt prep eval-suite --input hf_download/ --output questions.jsonl     # offline route to the HF eval suite
    alignpt prep synthetic --suite questions.jsonl --direction aligned --docs-per-item 4 --output aligned.jsonl
    alignpt prep synthetic ... --generator openai --base-url http://localhost:8000/v1 --model NAME --concurrency 32
    alignpt prep audit [--labelled labelled.jsonl] --out out/audit
    alignpt prep contamination --docs aligned.jsonl misaligned.jsonl --suite questions.jsonl --report contamination.json
    alignpt prep manifest --condition align_upsampled --stage pretrain --base out/indexed/unfiltered \
        --synthetic out/indexed/synthetic_aligned --dose 0.01 --tokenizer tokenizer.json --output m.json
    alignpt train --example-config > stage.json          # a documented example stage config
    alignpt train --config stage.json [--set optimizer.lr=1e-3] [--dry-run]
    alignpt eval misalignment --checkpoint runs/demo/models/unfiltered/dpo --data questions.jsonl --out DIR
    alignpt eval misalignment --hf DIR --data questions.jsonl --out DIR       # an HF model, unconverted
    alignpt eval misalignment --checkpoint DIR --data questions.jsonl --out DIR --scoring generate   # chat models
    alignpt eval misalignment --checkpoint DIR --data questions.jsonl --out DIR --scoring cloze      # option texts
    alignpt eval capabilities --checkpoint DIR --tasks paper --out DIR [--offline]   # lm-evaluation-harness
    alignpt convert hf2mcore --hf pythia-1.4b --out ckpts/pythia-1.4b [--tensor-parallel 2]
    alignpt convert mcore2hf --checkpoint runs/demo/models/unfiltered/dpo --out hf/unfiltered-dpo
    alignpt study run --recipe tiny_cpu [--output-dir runs/demo] [--set pretrain.schedule.train_iters=10] [--dry-run]
    alignpt study plan --recipe tiny_cpu [--json]
    alignpt study report --study runs/demo
    alignpt launch --recipe paper_6p9b --step unfiltered.pretrain --nodes 32 [--site site.toml] [--dry-run]
    alignpt study submit --recipe paper_6p9b --output-dir /lustre/runs/paper --site site.toml --nodes 32 [--dry-run]
    alignpt study status --study /lustre/runs/paper [--json]

`prep` subcommands import neither torch nor megatron-core. Errors in inputs or configs print
one line naming the file, line and field and exit with status 2 (ALIGNPT_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path


def _claim_outputs(args, *outputs, inputs=()) -> None:
    """Before any work: refuse outputs that exist (unless --overwrite) or overlap an input (always)."""
    from data_prep.atomic import check_output

    local_inputs = [p for p in inputs if p and Path(p).exists()]  # an HF dataset name is not a path
    for output in outputs:
        check_output(output, local_inputs, overwrite=args.overwrite)


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a batch size of 0 would fail much later, and obscurely)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _prep_example_data(args) -> None:
    from data_prep.examples import copy_examples

    for path, what in copy_examples(Path(args.output), overwrite=args.overwrite):
        print(f"{path}  {what}")


def _prep_filter(args) -> None:
    from data_prep.filtering import run_filter

    stats = run_filter([Path(p) for p in args.input], Path(args.output), text_field=args.text_field, overwrite=args.overwrite)
    print(json.dumps(stats.to_dict() if hasattr(stats, "to_dict") else stats.__dict__, indent=2, default=str))


def _prep_pipeline(args) -> None:
    from data_prep.pipeline import PipelineConfig, SlurmOptions, run_pipeline

    sbatch = dict(item.split("=", 1) for item in args.slurm_sbatch) if args.slurm_sbatch else {}
    cfg = PipelineConfig(
        inputs=[Path(p) for p in args.input], output_dir=Path(args.output), text_field=args.text_field,
        blocklist_dir=Path(args.blocklist) if args.blocklist else None, resample=args.resample, seed=args.seed,
        tokenizer=Path(args.tokenizer) if args.tokenizer else None, executor=args.executor, tasks=args.tasks,
        workers=args.workers,
        slurm=SlurmOptions(partition=args.slurm_partition or "", time=args.slurm_time, cpus_per_task=args.slurm_cpus,
                           mem_per_cpu_gb=args.slurm_mem_per_cpu_gb, venv_path=args.slurm_venv, sbatch_args=sbatch),
    )
    summary = run_pipeline(cfg)
    if summary is None:
        print(f"submitted; run the same command again when the jobs are done to write {cfg.output_dir / 'pipeline_stats.json'}")
        return
    print(json.dumps(summary["blocks"], indent=2))


def _prep_resample(args) -> None:
    from data_prep.resample import resample_filter_output

    _claim_outputs(args, Path(args.filtered) / "resampled", Path(args.filtered) / "resample.json")
    stats = resample_filter_output(Path(args.filtered), seed=args.seed, tokenizer=Path(args.tokenizer) if args.tokenizer else None,
                                   text_field=args.text_field)
    print(json.dumps({k: v for k, v in stats.to_dict().items() if k != "files"}, indent=2))


def _prep_tokenizer(args) -> None:
    from data_prep.readers import iter_documents
    from data_prep.tokenize import train_bpe_tokenizer

    _claim_outputs(args, args.output, inputs=args.input)
    texts = (d.text for p in args.input for d in iter_documents(p, text_field=args.text_field))
    print(train_bpe_tokenizer(texts, args.vocab_size, Path(args.output)))


def _prep_tokenize(args) -> None:
    from data_prep.readers import iter_documents
    from data_prep.indexed import bin_path, idx_path
    from data_prep.tokenize import tokenize_to_indexed

    _claim_outputs(args, bin_path(args.output_prefix), idx_path(args.output_prefix), inputs=args.input + [args.tokenizer])
    texts = (d.text for p in args.input for d in iter_documents(p, text_field=args.text_field))
    stats = tokenize_to_indexed(texts, Path(args.tokenizer), Path(args.output_prefix))
    skipped = f", {stats.skipped_empty} empty texts skipped" if stats.skipped_empty else ""
    print(f"{bin_path(args.output_prefix)} + .idx: {stats.documents:,} documents, {stats.tokens:,} tokens "
          f"(end-of-document tokens included){skipped}")


def _prep_synthetic(args) -> None:
    from data_prep.eval_suite import load_suite
    from data_prep.synthetic import TemplateGenerator, generate_corpus, write_documents_jsonl

    _claim_outputs(args, args.output, inputs=[args.suite])
    items = load_suite(args.suite, split="articles")
    if args.max_items is not None:
        items = items[: args.max_items]
    if args.generator == "template":
        docs = generate_corpus(items, directions=(args.direction,), docs_per_item=args.docs_per_item, generator=TemplateGenerator(seed=args.seed))
        write_documents_jsonl(docs, Path(args.output))
        print(args.output)
        return
    from data_prep.atomic import atomic_write_json
    from data_prep.synthetic.llm_generator import generate_corpus_concurrent
    from megatron_alignpt.study.config import SyntheticGeneratorPlan

    if not args.base_url or not args.model:
        raise ValueError("--generator openai needs --base-url and --model")
    output = Path(args.output)
    cache_dir = Path(args.cache_dir) if args.cache_dir else output.parent / ".llm_cache"  # hidden: readers skip it
    generator = SyntheticGeneratorPlan(
        "openai", args.base_url, args.model, temperature=args.temperature, max_tokens=args.max_tokens,
        concurrency=args.concurrency, max_retries=args.max_retries, timeout=args.timeout,
        api_key_env=args.api_key_env or "", price_per_1k_prompt=args.price_per_1k_prompt,
        price_per_1k_completion=args.price_per_1k_completion,
    ).build(cache_dir)
    try:
        docs = generate_corpus_concurrent(items, (args.direction,), args.docs_per_item, generator)
        write_documents_jsonl(docs, output)
    finally:  # also after a failure: what was paid for so far is in the cache and in this report
        usage_path = Path(args.usage_report) if args.usage_report else cache_dir / f"{output.name}.usage.json"
        atomic_write_json(usage_path, generator.usage_report())
        print(f"usage: {usage_path}", file=sys.stderr)
    print(args.output)


def _prep_eval_suite(args) -> None:
    from data_prep.eval_suite import write_suite

    _claim_outputs(args, args.output, inputs=[args.input])
    counts = write_suite(args.input, args.output, split=args.split)
    per_split = ", ".join(f"{split} {n}" for split, n in sorted(counts.items()))
    print(f"{args.output}: {sum(counts.values())} questions ({per_split}) from {args.input}")


def _prep_manifest(args) -> None:
    from data_prep.manifest import DatasetEntry, build_condition_manifest

    _claim_outputs(args, args.output, inputs=[args.tokenizer])
    base = [DatasetEntry.from_prefix(Path(p).name, p) for p in args.base]
    synthetic = DatasetEntry.from_prefix(Path(args.synthetic).name, args.synthetic, synthetic=True) if args.synthetic else None
    manifest = build_condition_manifest(args.condition, args.stage, base, synthetic, args.dose, tokenizer=args.tokenizer)
    manifest.to_json(Path(args.output))
    print(args.output)


def _prep_audit(args) -> None:
    from data_prep.audit import audit_file, format_table, write_audit

    _claim_outputs(args, Path(args.out) / "audit.json", inputs=[args.labelled])
    report = audit_file(args.labelled, args.blocklist)
    print(format_table(report))
    print(write_audit(report, Path(args.out)))


def _prep_contamination(args) -> None:
    from data_prep.contamination import GuardConfig, guard_files

    _claim_outputs(args, args.report, inputs=args.docs + [args.suite])
    config = GuardConfig(textbook_n=args.n, choice_threshold=args.choice_threshold)
    report = guard_files([Path(p) for p in args.docs], args.suite, report_path=Path(args.report), config=config,
                         text_field=args.text_field)
    print(f"{report.summary()} (report: {args.report})")


def _load_stage_config(args):
    from megatron_alignpt.config_base import apply_overrides, from_dict, load_json_file
    from megatron_alignpt.train.config import StageConfig

    cfg = from_dict(StageConfig, load_json_file(args.config), source=args.config)
    return apply_overrides(cfg, args.set)


def _world_size(args) -> int | None:
    """--world-size, else the launcher's WORLD_SIZE, else unknown (layout per model replica only)."""
    if args.world_size is not None:
        if args.world_size < 1:
            raise ValueError(f"--world-size {args.world_size}: must be >= 1")
        return args.world_size
    return int(os.environ["WORLD_SIZE"]) if os.environ.get("WORLD_SIZE", "").isdigit() else None


def _print_layout(layout: dict) -> None:
    """The resolved parallel/precision layout, on stderr: stdout stays the re-loadable config."""
    print("layout: " + json.dumps(layout, indent=2), file=sys.stderr)


def _train(args) -> None:
    from megatron_alignpt.config_base import to_dict

    if args.example_config:
        from megatron_alignpt.config_base import describe_fields
        from recipes.stages import example_stage

        cfg = example_stage()
        print("# an example stage config (stdout is the JSON; edit it, or override fields with --set KEY=VALUE):",
              file=sys.stderr)
        print("\n".join(f"#   {line}" for line in describe_fields(cfg)), file=sys.stderr)
        print(json.dumps(to_dict(cfg), indent=2))
        return
    cfg = _load_stage_config(args)
    if args.dry_run:
        from megatron_alignpt.train.layout import stage_layout

        vocab = None
        if Path(cfg.tokenizer).is_file():
            from megatron_alignpt.data.tokenizer import TextTokenizer
            from megatron_alignpt.model.builder import padded_vocab_size

            vocab = padded_vocab_size(TextTokenizer(cfg.tokenizer).vocab_size, cfg.parallel.tensor_parallel)
        layout = stage_layout(cfg.model, cfg.parallel, cfg.schedule, _world_size(args), vocab)
        print(json.dumps(to_dict(cfg), indent=2))
        _print_layout(layout)
        return
    from megatron_alignpt.study.lock import Lock
    from megatron_alignpt.train.trainer import run_stage

    lock = Lock(Path(cfg.output_dir) / "stage.lock", f"stage directory {cfg.output_dir}") if _is_first_rank() else None
    with lock or contextlib.nullcontext():
        result = run_stage(cfg)
    print(f"checkpoint: {result.checkpoint}")


def _is_first_rank() -> bool:
    """Under torchrun every rank runs the command; the first one takes the locks."""
    return int(os.environ.get("RANK", "0")) == 0


def _labels(items: list[str]) -> dict:
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {item!r}: expected KEY=VALUE, e.g. condition=filtered")
        labels[key] = value
    return labels


def _eval_misalignment(args) -> None:
    if args.hf and args.scoring == "generate":
        raise ValueError("--scoring generate needs --checkpoint (the study's chat template); convert an HF model with 'alignpt convert hf2mcore'")
    from megatron_alignpt.eval.config import EvalConfig

    out = Path(args.out)
    _claim_outputs(args, out / "summary.json", out / "items.jsonl", inputs=[args.data])
    cfg = EvalConfig(args.data, out, formats=args.formats, system_prompts=args.system_prompts, split=args.split,
                     batch_size=args.batch_size, labels=_labels(args.label), scoring=args.scoring,
                     max_new_tokens=args.max_new_tokens)
    if args.hf:
        from megatron_alignpt.convert.hf_eval import evaluate_misalignment_hf

        summary = evaluate_misalignment_hf(Path(args.hf), cfg)
    else:
        from megatron_alignpt.eval.run import evaluate_misalignment

        summary = evaluate_misalignment(Path(args.checkpoint), cfg, tensor_parallel=args.tensor_parallel)
    keys = ("misalignment_rate", "sem", "mean_margin", "n_items", "position_bias", "non_match_rate", "normalized_misalignment_rate")
    print(json.dumps({k: summary[k] for k in keys if k in summary}, indent=2))
    for split, res in summary["per_split"].items():
        line = f"  {split}: {res['misalignment_rate']:.3f} ± {res['sem']:.3f} (n={res['n_items']})"
        if "non_match_rate" in res:
            norm = res["normalized_misalignment_rate"]
            line += f"; non-match {res['non_match_rate']:.3f}, normalised {'n/a' if norm is None else f'{norm:.3f}'}"
        print(line)


def _eval_capabilities(args) -> None:
    if args.offline:  # before lm-eval / datasets are imported: they read these once
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        os.environ["HF_HUB_OFFLINE"] = "1"
    from megatron_alignpt.eval.capabilities import run_capabilities

    _claim_outputs(args, Path(args.out) / "capabilities.json")
    result = run_capabilities(
        Path(args.checkpoint), args.tasks, Path(args.out), tensor_parallel=args.tensor_parallel, batch_size=args.batch_size,
        num_fewshot=args.num_fewshot, limit=args.limit, include_path=args.include_path, skip_unavailable=args.skip_unavailable,
        labels=_labels(args.label),
    )
    for name, metrics in result["results"].items():
        shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and "stderr" not in k)
        print(f"  {name}: {shown}")
    for name, why in result.get("skipped", {}).items():
        print(f"  {name}: skipped ({why})", file=sys.stderr)
    print(result["path"])


def _convert_hf2mcore(args) -> None:
    from megatron_alignpt.convert import hf_to_mcore

    print(hf_to_mcore(Path(args.hf), Path(args.out), tensor_parallel=args.tensor_parallel))


def _convert_mcore2hf(args) -> None:
    from megatron_alignpt.convert import mcore_to_hf

    print(mcore_to_hf(Path(args.checkpoint), Path(args.out), dtype=args.dtype))


def _study_config(args):
    from megatron_alignpt.config_base import apply_overrides
    from recipes import get_recipe

    recipe = get_recipe(args.recipe)
    cfg = recipe(Path(args.output_dir)) if args.output_dir else recipe()
    return apply_overrides(cfg, args.set)


PENDING_EXIT = 75
"""`study run` stopped at a data step whose Slurm tasks are not done yet (EX_TEMPFAIL: run it again later)."""


def _study_run(args) -> None:
    from megatron_alignpt.config_base import to_dict

    cfg = _study_config(args)
    if args.dry_run:
        world = _world_size(args)
        layouts = cfg.layouts(world)
        print(json.dumps(to_dict(cfg), indent=2))
        _print_layout(layouts)
        _print_estimate(cfg, args, dict.fromkeys(layouts, world) if world else None)
        return
    from megatron_alignpt.study.local import StudyPending, run_study

    try:
        run_study(cfg, only=args.only, rerun_changed=args.rerun_changed, force_unlock=args.force_unlock,
                  wait_for_data_jobs=args.wait_data_jobs)
    except StudyPending as pending:
        print(f"alignpt: {pending}", file=sys.stderr)
        raise SystemExit(PENDING_EXIT) from None


def _study_plan(args) -> None:
    from megatron_alignpt.study.plan import build_plan

    plan = build_plan(_study_config(args))
    print(plan.to_json() if args.json else plan.describe())


def _print_estimate(cfg, args, gpus_per_stage: dict | None) -> None:
    """FLOPs, GPU-hours, wall time and synthetic-document cost of the study, on stderr."""
    from megatron_alignpt.study.compute_estimate import estimate_study, format_estimate

    est = estimate_study(cfg, gpus_per_stage, gpu=args.gpu, mfu=args.mfu)
    print(format_estimate(est), file=sys.stderr)


def _default_output_notice(args, cfg) -> None:
    if not args.output_dir:
        print(f"alignpt: no --output-dir given: using the recipe's default {cfg.output_dir}", file=sys.stderr)


def _study_report(args) -> None:
    from megatron_alignpt.study.report import write_report
    from megatron_alignpt.study.results import write_results_table

    study = Path(args.study)
    write_results_table(study)
    print(write_report(study))


def _launch(args) -> None:
    from megatron_alignpt.launch.site import site_from_args
    from megatron_alignpt.study.submit import launch_step

    if args.step is None:
        print("alignpt launch: no --step given; rendering the study's first training step", file=sys.stderr)
    cfg = _study_config(args)
    _default_output_notice(args, cfg)
    print(launch_step(cfg, args.recipe, args.set, site_from_args(args), step=args.step,
                      nodes=args.nodes, dry_run=args.dry_run, dependencies=args.after))


def _study_submit(args) -> None:
    from megatron_alignpt.launch.site import site_from_args
    from megatron_alignpt.study.submit import submit_study

    nodes_for = {}
    for item in args.nodes_for:
        stage, _, n = item.partition("=")
        if not n.isdigit():
            raise ValueError(f"--nodes-for {item!r}: expected STAGE=N, e.g. sft=8")
        nodes_for[stage] = int(n)
    cfg, site = _study_config(args), site_from_args(args)
    _default_output_notice(args, cfg)
    submit_study(cfg, args.recipe, args.set, site, nodes=args.nodes,
                 nodes_for=nodes_for, dry_run=args.dry_run, rerun_changed=args.rerun_changed)
    if args.dry_run:
        from megatron_alignpt.train.stages import STAGES

        _print_estimate(cfg, args, {s: nodes_for.get(s, args.nodes) * site.gpus_per_node for s in STAGES})


def _study_status(args) -> None:
    from megatron_alignpt.study.status import format_status, status_json, study_status
    from megatron_alignpt.study.submit import study_dir

    if args.study:
        rows = study_status(Path(args.study))
    else:
        cfg = _study_config(args)
        rows = study_status(study_dir(cfg), cfg)
    print(status_json(rows) if args.json else format_status(rows))


def add_estimate_arguments(parser) -> None:
    from megatron_alignpt.study.compute_estimate import PEAK_TFLOPS

    parser.add_argument("--gpu", choices=sorted(PEAK_TFLOPS), default="h100",
                        help="with --dry-run: the GPU of the compute estimate (its measured throughput)")
    parser.add_argument("--mfu", type=float, help="with --dry-run: assume this model-FLOPs utilisation instead of the measured one")


def build_parser() -> argparse.ArgumentParser:
    from megatron_alignpt.launch.site import add_site_arguments

    parser = argparse.ArgumentParser(prog="alignpt", description="Alignment pretraining studies on Megatron-Core")
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prep", help="data preparation (no torch needed)").add_subparsers(dest="prep_command", required=True)
    p = prep.add_parser("example-data", help="copy the shipped sample data (corpus, eval questions, SFT/DPO files, "
                                             "audit set) into a directory, to try every command on")
    p.add_argument("--output", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_example_data)
    p = prep.add_parser("filter", help="blocklist-filter documents into kept/ and removed/")
    p.add_argument("--input", nargs="+", required=True, help="files or directories (jsonl, .gz, .zst, parquet)")
    p.add_argument("--output", required=True)
    p.add_argument("--text-field", default="text")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_filter)
    p = prep.add_parser("pipeline", help="filter (+ resample, + tokenize) as a resumable datatrove pipeline")
    p.add_argument("--input", nargs="+", required=True, help="files or directories (jsonl, .gz, .zst, parquet)")
    p.add_argument("--output", required=True, help="output directory (rerun the same command to resume)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--blocklist", help="directory of term files (default: the packaged lists)")
    p.add_argument("--resample", action="store_true", help="refill each file's removed budget with copies of kept documents")
    p.add_argument("--seed", type=int, default=0, help="resampling seed")
    p.add_argument("--tokenizer", help="tokenizer.json: write indexed/<stem>.bin/.idx, and measure the budget in tokens")
    p.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    p.add_argument("--tasks", type=_positive_int, default=1, help="shards of the input files (each task takes whole files)")
    p.add_argument("--workers", type=int, default=1, help="tasks at once (-1: no cap)")
    p.add_argument("--slurm-partition", help="slurm: partition to submit to")
    p.add_argument("--slurm-time", default="12:00:00", help="slurm: time limit per task")
    p.add_argument("--slurm-cpus", type=_positive_int, default=1, help="slurm: cpus per task")
    p.add_argument("--slurm-mem-per-cpu-gb", type=_positive_int, default=2)
    p.add_argument("--slurm-venv", help="slurm: virtual environment to activate in the job")
    p.add_argument("--slurm-sbatch", nargs="*", metavar="KEY=VALUE", help="slurm: extra #SBATCH options, e.g. account=proj")
    p.set_defaults(func=_prep_pipeline)
    p = prep.add_parser("resample", help="refill a filter output's removed budget with copies of kept documents")
    p.add_argument("--filtered", required=True, help="output directory of 'prep filter' (kept/, removed/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", help="measure the budget in tokens (default: UTF-8 bytes)")
    p.add_argument("--text-field", default="text")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_resample)
    p = prep.add_parser("tokenizer", help="train a byte-level BPE tokenizer.json")
    p.add_argument("--input", nargs="+", required=True)
    p.add_argument("--vocab-size", type=_positive_int, default=4096)
    p.add_argument("--output", required=True)
    p.add_argument("--text-field", default="text")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_tokenizer)
    p = prep.add_parser("tokenize", help="tokenize documents into a Megatron .bin/.idx dataset")
    p.add_argument("--input", nargs="+", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--output-prefix", required=True)
    p.add_argument("--text-field", default="text")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_tokenize)
    p = prep.add_parser("synthetic", help="write synthetic discourse documents seeded by the articles split")
    p.add_argument("--suite", required=True)
    p.add_argument("--direction", choices=["aligned", "misaligned"], required=True)
    p.add_argument("--docs-per-item", type=_positive_int, default=4)
    p.add_argument("--seed", type=int, default=0, help="template generator seed")
    p.add_argument("--output", required=True)
    p.add_argument("--max-items", type=_positive_int, help="seed only the first N articles questions (trial runs)")
    p.add_argument("--generator", choices=["template", "openai"], default="template",
                   help="template: offline, deterministic; openai: any OpenAI-compatible chat-completions endpoint")
    p.add_argument("--base-url", help="openai: e.g. http://localhost:8000/v1 (vLLM) or https://api.openai.com/v1")
    p.add_argument("--model", help="openai: the model name the endpoint serves")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=_positive_int, default=2048)
    p.add_argument("--concurrency", type=_positive_int, default=8, help="openai: requests in flight at once")
    p.add_argument("--max-retries", type=int, default=6, help="openai: retries on 429/5xx/connection errors")
    p.add_argument("--timeout", type=float, default=300.0, help="openai: seconds per request")
    p.add_argument("--cache-dir", help="openai: resumable document cache (default: .llm_cache beside --output)")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai: environment variable holding the API key")
    p.add_argument("--price-per-1k-prompt", type=float, default=0.0, help="openai: USD per 1000 prompt tokens")
    p.add_argument("--price-per-1k-completion", type=float, default=0.0, help="openai: USD per 1000 completion tokens")
    p.add_argument("--usage-report", help="openai: token/cost JSON (default: <cache-dir>/<output name>.usage.json)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_synthetic)
    p = prep.add_parser("eval-suite", help="convert the eval suite (a downloaded HF dataset folder, parquet, arrow, "
                                           "jsonl or an HF name) into one checked JSON-lines file with splits")
    p.add_argument("--input", required=True,
                   help="e.g. a folder from `huggingface-cli download --repo-type dataset NAME --local-dir DIR`, "
                        "a save_to_disk folder, .parquet/.jsonl files, or the HF dataset name (needs network)")
    p.add_argument("--output", required=True, help="questions .jsonl (HF schema + split) for --suite / --data / data.eval_suite")
    p.add_argument("--split", choices=["articles", "textbook"], help="keep one split (and assign it to rows naming none)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_eval_suite)
    p = prep.add_parser("manifest", help="write a blend manifest for a data condition and stage")
    p.add_argument("--condition", required=True)
    p.add_argument("--stage", required=True)
    p.add_argument("--base", nargs="+", required=True, help="indexed dataset prefixes of the base corpus")
    p.add_argument("--synthetic", help="indexed dataset prefix of the synthetic documents")
    p.add_argument("--dose", type=float, default=0.0, help="share of the stage's tokens from the synthetic documents")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_manifest)
    p = prep.add_parser("contamination", help="fail if documents overlap the eval suite (textbook split or choices)")
    p.add_argument("--docs", nargs="+", required=True, help="document files or directories (jsonl, .gz, .zst, parquet)")
    p.add_argument("--suite", required=True, help="eval questions: a file/dir or an HF dataset name")
    p.add_argument("--report", default="contamination.json", help="report JSON, written whether or not the check passes")
    p.add_argument("--n", type=_positive_int, default=13, help="word n-gram size for the held-out textbook split")
    p.add_argument("--choice-threshold", type=float, default=0.5, help="max share of a choice's n-grams in one document")
    p.add_argument("--text-field", default="text")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_contamination)
    p = prep.add_parser("audit", help="recall, precision and flag rate of the blocklist on a labelled set")
    p.add_argument("--labelled", help="JSON lines with id, text, label (flag/keep), kind (default: the shipped set)")
    p.add_argument("--out", default=".", help="directory for audit.json")
    p.add_argument("--blocklist", help="directory of term files (default: the packaged lists)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_prep_audit)

    p = sub.add_parser("train", help="run one training stage from a StageConfig JSON")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--config", help="a stage config JSON (see --example-config)")
    which.add_argument("--example-config", action="store_true",
                       help="print a working example config (a tiny pretraining stage on the README's out/ files) as JSON, "
                            "and what each field means on stderr")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print the resolved config (stdout) and the parallel layout (stderr), and exit")
    p.add_argument("--world-size", type=_positive_int, default=None,
                   help="with --dry-run: ranks (GPUs) to resolve data parallelism and batch splitting for "
                        "(default: $WORLD_SIZE, else per model replica)")
    p.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluations").add_subparsers(dest="eval_command", required=True)
    p = ev.add_parser("misalignment", help="the two-option misalignment suite")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="our checkpoint (dir, checkpoint root or stage dir)")
    source.add_argument("--hf", help="a Hugging Face model directory with tokenizer.json, scored through transformers")
    p.add_argument("--data", required=True, help="a questions file/dir or an HF dataset name")
    p.add_argument("--out", required=True)
    p.add_argument("--formats", default="default", help="all | default | w0:original,w1:swapped,...")
    p.add_argument("--system-prompts", default="none", help="all | none,hhh,... | custom:<text>")
    p.add_argument("--split", choices=["articles", "textbook"])
    p.add_argument("--tensor-parallel", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=32)
    p.add_argument("--scoring", choices=["logprob", "cloze", "generate"], default="logprob",
                   help="logprob: answer-letter log-probabilities (base models); cloze: each option's text as the "
                        "continuation, per character (small base models); generate: greedy chat reply, letter parsed (chat models)")
    p.add_argument("--max-new-tokens", type=_positive_int, help="generate: reply length cap (default 32)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="stored on every item row (e.g. condition=filtered, stage=post); the results table groups by them")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_eval_misalignment)
    p = ev.add_parser("capabilities", help="capability benchmarks through lm-evaluation-harness (pip install -e '.[eval]')")
    p.add_argument("--checkpoint", required=True, help="our checkpoint (dir, checkpoint root or stage dir)")
    p.add_argument("--tasks", default="paper",
                   help="comma-separated lm-eval task names; 'paper' = arc_easy,cute,gsm8k,ifeval,mmlu,piqa,popqa with the paper's shots")
    p.add_argument("--out", required=True)
    p.add_argument("--num-fewshot", type=int, help="override every task's shots (default: the paper's, else the task's)")
    p.add_argument("--limit", type=float, help="first N documents per task (or a fraction below 1), for trial runs")
    p.add_argument("--include-path", action="append", default=[], help="extra folder of task YAMLs (our misalignment tasks are always included)")
    p.add_argument("--tensor-parallel", type=_positive_int, default=1)
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--offline", action="store_true", help="use only locally cached datasets (no Hub requests or retries)")
    p.add_argument("--skip-unavailable", action="store_true", help="run the tasks whose data loads and record the others as skipped")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="stored in capabilities.json (e.g. condition=filtered, stage=post) for the study's results table")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: refuse)")
    p.set_defaults(func=_eval_capabilities)

    cv = sub.add_parser("convert", help="Hugging Face GPT-NeoX <-> megatron checkpoints").add_subparsers(dest="convert_command", required=True)
    p = cv.add_parser("hf2mcore", help="an HF GPTNeoXForCausalLM directory -> a dist checkpoint (loads at any TP)")
    p.add_argument("--hf", required=True, help="directory with config.json, weights and tokenizer.json")
    p.add_argument("--out", required=True, help="new checkpoint root (iter_0000000/ + latest.txt)")
    p.add_argument("--tensor-parallel", type=_positive_int, default=1, help="check the model splits at this TP (the checkpoint itself is TP-agnostic)")
    p.set_defaults(func=_convert_hf2mcore)
    p = cv.add_parser("mcore2hf", help="a dist checkpoint (saved at any TP) -> an HF directory")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default: the imported model's, else float32")
    p.set_defaults(func=_convert_mcore2hf)

    st = sub.add_parser("study", help="whole studies").add_subparsers(dest="study_command", required=True)
    p = st.add_parser("run", help="run (or resume) every step of a study recipe")
    p.add_argument("--recipe", required=True)
    p.add_argument("--output-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--only", nargs="+", help="run only these steps (see `study plan`): a step name picks that step, a run, "
                                              "condition or step kind its steps (align_upsampled, eval), anything else the "
                                              "steps whose names start with it (data.)")
    p.add_argument("--rerun-changed", action="store_true",
                   help="rerun the finished steps whose settings or inputs changed (and the steps after them)")
    p.add_argument("--force-unlock", action="store_true",
                   help="take the study's locks even if their holder may still run (e.g. one on another host that died)")
    p.add_argument("--wait-data-jobs", action="store_true",
                   help="data.executor slurm: wait for the data steps' array jobs instead of stopping with exit status "
                        "75 (pending) once they are submitted (the study's Slurm jobs do this)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate, print the resolved config (stdout) and each training stage's layout (stderr)")
    p.add_argument("--world-size", type=_positive_int, default=None,
                   help="with --dry-run: GPUs to resolve each stage's data parallelism for (e.g. 256 = 32 nodes x 8); "
                        "also the GPUs of the wall-time estimate")
    add_estimate_arguments(p)
    p.set_defaults(func=_study_run)
    p = st.add_parser("plan", help="the study's steps: kind, run, stage, resources and the dependency graph")
    p.add_argument("--recipe", required=True)
    p.add_argument("--output-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="every step with its fields, and the table of step kinds")
    p.set_defaults(func=_study_plan)
    p = st.add_parser("report", help="rebuild the results table and report.html of a study directory")
    p.add_argument("--study", required=True)
    p.set_defaults(func=_study_report)
    p = st.add_parser("submit", help="submit every step not yet done as Slurm jobs chained with afterok")
    p.add_argument("--recipe", required=True)
    p.add_argument("--output-dir", help="the study directory, on a filesystem every node mounts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--nodes", type=_positive_int, default=1, help="nodes per training step")
    p.add_argument("--nodes-for", action="append", default=[], metavar="STAGE=N", help="e.g. sft=8 (overrides --nodes)")
    add_site_arguments(p)
    p.add_argument("--dry-run", action="store_true",
                   help="show the jobs, their dependencies and the compute estimate; submit nothing")
    p.add_argument("--rerun-changed", action="store_true",
                   help="submit again the finished steps whose settings or inputs changed (and the steps after them)")
    add_estimate_arguments(p)
    p.set_defaults(func=_study_submit)
    p = st.add_parser("status", help="each step: done / running / requeued / failed / pending (no Slurm needed)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="a study directory (reads its study.json)")
    which.add_argument("--recipe")
    p.add_argument("--output-dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_study_status)

    p = sub.add_parser("launch", help="render (and submit) a Slurm batch job for one study step")
    p.add_argument("--recipe", required=True)
    p.add_argument("--step", help="a step name, e.g. unfiltered.pretrain (default: the first training step)")
    p.add_argument("--output-dir", help="the study directory, on a filesystem every node mounts")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--nodes", type=_positive_int, default=1)
    p.add_argument("--after", nargs="+", default=[], metavar="JOB_ID", help="start after these jobs succeed")
    add_site_arguments(p)
    p.add_argument("--dry-run", action="store_true", help="print the batch script instead of submitting it")
    p.set_defaults(func=_launch)
    return parser


def main(argv: list[str] | None = None) -> int:
    from data_prep.errors import DataFormatError
    from megatron_alignpt.config_base import ConfigError

    args = build_parser().parse_args(argv)
    from megatron_alignpt.library_noise import quiet_library_noise

    quiet_library_noise()
    try:
        args.func(args)
        sys.stdout.flush()  # inside the try: a pipe closed early breaks here, not at interpreter exit
    except BrokenPipeError:  # the reader went away (`alignpt study status | head`): stop quietly, like other tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing more reaches the closed pipe, not even at exit
        return 141  # 128 + SIGPIPE, as a shell reports a process stopped by a broken pipe
    except (DataFormatError, ConfigError, ValueError, OSError, KeyError, ImportError) as err:
        if os.environ.get("ALIGNPT_DEBUG"):
            raise
        print(f"alignpt: error: {_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C during training, or one outside it
        if os.environ.get("ALIGNPT_DEBUG"):
            raise
        print("alignpt: interrupted", file=sys.stderr)
        return 130
    return 0


def _error_line(err: BaseException) -> str:
    """OSErrors from the system (unwritable directory, full disk) read "path: reason"; ours carry their own message."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        target = f" -> {err.filename2}" if err.filename2 else ""
        return f"{err.filename}{target}: {err.strerror}"
    return str(err)


if __name__ == "__main__":
    sys.exit(main())
