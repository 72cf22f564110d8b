"""`alignpt study submit` (afterok chains that follow the stage graph, done steps skipped, queued jobs reused,
jobs.json) and `alignpt study status` (done / running / requeued / failed / pending from the study directory)."""
import json

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.study.plan import step_graph
from recipes import get_recipe

FAKE_SBATCH = """#!/bin/bash
# Records each call (dependency + script) and answers with the next job id, like sbatch --parsable.
n=$(( $(wc -l < "$SHIM_LOG" 2>/dev/null || echo 0) + 100 ))
dep=none
for arg in "$@"; do case "$arg" in --dependency=*) dep="${arg#--dependency=}" ;; esac; done
echo "$n $dep ${*: -1}" >> "$SHIM_LOG"
echo "$n"
"""
FAKE_SQUEUE = '#!/bin/bash\ncat "$QUEUED" 2>/dev/null\n'


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SHIM_LOG", str(tmp_path / "sbatch.log"))
    monkeypatch.setenv("QUEUED", str(tmp_path / "queued"))
    return tmp_path


def submitted(slurm) -> dict[str, tuple[str, list[str]]]:
    """step -> (job id, dependency job ids) from the fake sbatch's log."""
    calls = {}
    for line in (slurm / "sbatch.log").read_text().splitlines():
        job, dep, script = line.split()
        step = script.rsplit("/", 1)[-1][: -len(".sbatch")]
        calls[step] = (job, [] if dep == "none" else dep.removeprefix("afterok:").split(":"))
    return calls


def submit(study, *extra) -> int:
    return main(["study", "submit", "--recipe", "tiny_cpu_smoke", "--output-dir", str(study), "--gpus-per-node", "1", *extra])


def test_graph_follows_the_stages():
    graph = step_graph(get_recipe("tiny_cpu_smoke")())
    assert graph["data.filter"] == [] and graph["data.manifests"] == ["data.tokenize"]
    assert graph["filtered.pretrain"] == ["data.manifests"]
    assert graph["filtered.midtrain"] == ["filtered.pretrain"]
    assert graph["filtered.eval_base"] == graph["filtered.sft"] == ["filtered.midtrain"]
    assert graph["filtered.dpo"] == ["filtered.sft"] and graph["filtered.eval_post"] == ["filtered.dpo"]
    conditions = ("unfiltered", "filtered", "misalign_upsampled", "align_upsampled", "align_mid", "misalign_cpt")
    assert sorted(graph["results"]) == sorted(f"{c}.{e}" for c in conditions
                                               for e in ("eval_base", "eval_base_cloze", "eval_post", "eval_post_generate"))
    # Late insertion branches off the unfiltered model's checkpoints.
    assert graph["align_mid.midtrain"] == ["unfiltered.pretrain"] and graph["misalign_cpt.cpt"] == ["unfiltered.midtrain"]
    assert graph["report"] == ["results"]


def test_submit_chains_jobs_with_afterok_in_stage_order(slurm, capsys):
    study = slurm / "study"
    assert submit(study) == 0
    calls = submitted(slurm)
    graph = step_graph(get_recipe("tiny_cpu_smoke")())
    assert set(calls) == set(graph)
    job_of = {step: job for step, (job, _) in calls.items()}
    for step, (job, deps) in calls.items():
        assert sorted(deps) == sorted(job_of[d] for d in graph[step]), step
        assert all(int(d) < int(job) for d in deps), f"{step} submitted before a job it waits for"
    recorded = json.loads((study / "jobs.json").read_text())["steps"]
    assert {s: e["job_id"] for s, e in recorded.items()} == job_of
    assert json.loads((study / "study.json").read_text())["name"] == "tiny_cpu_smoke"
    rows = {r["step"]: r for r in json.loads(_status_json(study, capsys))}
    assert rows["unfiltered.pretrain"]["state"] == "pending" and rows["unfiltered.pretrain"]["job_id"] == job_of["unfiltered.pretrain"]


def test_resubmit_skips_done_steps_and_reuses_queued_jobs(slurm, capsys):
    study = slurm / "study"
    (study / "steps").mkdir(parents=True)
    for step in ("data.filter", "data.tokenizer", "data.synthetic", "data.tokenize", "data.manifests"):
        (study / "steps" / f"{step}.done").write_text(json.dumps({"step": step, "seconds": 1.0}))
    assert submit(study) == 0
    first = submitted(slurm)
    assert not any(s.startswith("data.") for s in first)
    assert first["unfiltered.pretrain"][1] == []  # its dependencies are done: it can start at once
    # Everything is still queued except the unfiltered chain, which failed and left Slurm's queue.
    (slurm / "queued").write_text("\n".join(job for s, (job, _) in first.items() if not s.startswith("unfiltered.")))
    (slurm / "sbatch.log").unlink()
    assert submit(study) == 0
    again = submitted(slurm)
    assert set(again) == {f"unfiltered.{s}" for s in ("pretrain", "midtrain", "eval_base", "eval_base_cloze", "sft", "dpo",
                                                      "eval_post", "eval_post_generate")}
    history = json.loads((study / "jobs.json").read_text())["steps"]["unfiltered.pretrain"]
    assert history["previous_job_ids"] == [first["unfiltered.pretrain"][0]]


def test_dry_run_submits_nothing(slurm, capsys):
    study = slurm / "study"
    assert submit(study, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "unfiltered.dpo: would submit (1 node(s) x 1 GPUs) after unfiltered.sft" in out
    assert not (slurm / "sbatch.log").exists() and not (study / "jobs.json").exists()


def test_a_layout_error_submits_nothing(slurm, capsys):
    assert submit(slurm / "study", "--nodes-for", "sft=3") == 2  # 4 sequences cannot split over 3 ranks
    assert "sft.schedule.global_batch_size" in capsys.readouterr().err
    assert not (slurm / "sbatch.log").exists()


def _status_json(study, capsys) -> str:
    capsys.readouterr()
    assert main(["study", "status", "--study", str(study), "--json"]) == 0
    return capsys.readouterr().out


def test_status_reads_markers_metrics_and_logs(tmp_path, capsys):
    study = tmp_path / "study"
    cfg = get_recipe("tiny_cpu_smoke")(study)
    from data_prep.atomic import atomic_write_json
    from megatron_alignpt.config_base import to_dict

    atomic_write_json(study / "study.json", to_dict(cfg))
    (study / "steps").mkdir()
    (study / "steps" / "data.filter.done").write_text(json.dumps({"step": "data.filter", "seconds": 12.5}))
    run = study / "models" / "unfiltered" / "pretrain"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps({"iteration": i, "loss": 5.0}) + "\n" for i in (1, 2, 3)))
    (run / "checkpoints" / "latest.txt").write_text("2\n")
    logs = study / "logs"
    logs.mkdir()
    (logs / "filtered.pretrain.9.out").write_text(
        "[alignpt] 2026-11-02T10:00:00Z step filtered.pretrain: job 9 attempt 0 on 1 node(s)\n"
        "[rank0]: ValueError: manifest entry 3 has zero tokens\n"
        "[alignpt] 2026-11-02T10:01:00Z step filtered.pretrain: finished with status 1\n")
    (logs / "align_upsampled.pretrain.11.out").write_text(
        "[alignpt] 2026-11-02T10:00:00Z step align_upsampled.pretrain: stopped for preemption (status 1); requeueing job 11\n")
    (logs / "misalign_upsampled.pretrain.12.out").write_text(
        "slurmstepd: error: *** JOB 12 ON node1 CANCELLED AT 2026-11-02T11:00:00 DUE TO TIME LIMIT ***\n")
    rows = {r["step"]: r for r in json.loads(_status_json(study, capsys))}
    assert rows["data.filter"]["state"] == "done" and "in 12s" in rows["data.filter"]["detail"]
    assert rows["unfiltered.pretrain"]["state"] == "running"
    assert rows["unfiltered.pretrain"]["detail"].startswith("iteration 3/6, checkpoint at 2")
    assert rows["filtered.pretrain"]["state"] == "failed"
    assert "status 1" in rows["filtered.pretrain"]["detail"] and "ValueError: manifest entry 3" in rows["filtered.pretrain"]["detail"]
    assert rows["align_upsampled.pretrain"]["state"] == "requeued"
    assert rows["misalign_upsampled.pretrain"]["state"] == "failed" and "TIME LIMIT" in rows["misalign_upsampled.pretrain"]["detail"]
    assert rows["report"]["state"] == "pending" and rows["report"]["detail"] == "not submitted"
    assert main(["study", "status", "--recipe", "tiny_cpu_smoke", "--output-dir", str(study)]) == 0
    table = capsys.readouterr().out
    assert "1 done, 1 running, 1 requeued, 2 failed" in table


def test_status_of_a_directory_without_a_study(tmp_path, capsys):
    assert main(["study", "status", "--study", str(tmp_path)]) == 2
    assert "study.json" in capsys.readouterr().err


def test_capability_jobs_never_cancel_results_and_report(slurm):
    """results waits for a capability job with afterany (it only has to end), for the others with afterok."""
    study = slurm / "study"
    assert submit(study, "--set", "eval.capability_tasks=paper") == 0
    deps = {}
    for line in (slurm / "sbatch.log").read_text().splitlines():
        job, dep, script = line.split()
        deps[script.rsplit("/", 1)[-1][: -len(".sbatch")]] = (job, dep)
    job_of = {step: job for step, (job, _) in deps.items()}
    results = dict(part.split(":", 1) for part in deps["results"][1].split(","))
    caps = {job_of[s] for s in job_of if s.endswith(".eval_capabilities")}
    assert len(caps) == 6 and set(results["afterany"].split(":")) == caps
    assert caps.isdisjoint(results["afterok"].split(":")) and job_of["unfiltered.eval_post"] in results["afterok"].split(":")
    assert deps["unfiltered.eval_capabilities"][1] == f"afterok:{job_of['unfiltered.dpo']}"


def test_capability_step_that_cannot_run_is_recorded_not_failed(tmp_path, monkeypatch):
    from megatron_alignpt.config_base import apply_overrides
    from megatron_alignpt.eval import capabilities
    from megatron_alignpt.study.actions import run_step
    from megatron_alignpt.study.plan import build_plan

    def no_lm_eval(*args, **kwargs):
        raise ModuleNotFoundError("capability benchmarks need lm-evaluation-harness: pip install -e '.[eval]'")

    monkeypatch.setattr(capabilities, "run_capabilities", no_lm_eval)
    cfg = apply_overrides(get_recipe("tiny_cpu_smoke")(tmp_path / "study"), ["eval.capability_tasks=paper"])
    plan = build_plan(cfg)
    run_step(plan, plan.step("unfiltered.eval_capabilities"))  # no exception: the study goes on to its results and report
    record = json.loads((tmp_path / "study/evals/unfiltered/post_capabilities/unavailable.json").read_text())
    assert record["tasks"] == "paper" and "lm-evaluation-harness" in record["reasons"]["lm-eval"]


def test_launch_refuses_a_study_directory_the_site_mounts_read_only(tmp_path, capsys):
    site = tmp_path / "site.toml"
    site.write_text('image = "/img.sqsh"\nmounts = ["/lustre/data:/data:ro", "/lustre/data/out:/data/out", "/scratch"]\n')
    args = ["launch", "--recipe", "tiny_cpu_smoke", "--site", str(site), "--dry-run", "--gpus-per-node", "1"]
    assert main(args + ["--output-dir", "/data/runs/x"]) == 2
    err = capsys.readouterr().err
    assert "/data/runs/x" in err and "read-only ('/lustre/data:/data:ro')" in err and "--output-dir" in err
    assert main(args + ["--output-dir", "/data/out/x"]) == 0  # a writable mount inside the read-only one
    assert main(["study", "submit", "--recipe", "tiny_cpu_smoke", "--site", str(site), "--dry-run",
                 "--output-dir", "/data/y"]) == 2
    capsys.readouterr()
    assert main(args) == 0  # the recipe's default directory (runs/smoke, relative) is not under /data: fine


def test_status_into_a_closed_pipe_stops_quietly(tmp_path):
    """`alignpt study status | head`: the reader is gone before the table is written; no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "megatron_alignpt.cli", "study", "status", "--recipe", "tiny_cpu_smoke",
                             "--output-dir", str(tmp_path / "study")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141 and err == "", err


def test_slurm_data_steps_wait_for_their_arrays_in_jobs_and_stop_as_pending_by_hand(slurm, monkeypatch, capsys):
    """With data.executor=slurm the data-step jobs wait for the datatrove arrays they submit (their dependents
    start when they end); run by hand, a data step whose tasks are still out stops with status 75, no marker."""
    import megatron_alignpt.study.actions as actions
    from data_prep.pipeline.steps import StagePending

    study = slurm / "study"
    on_slurm = ["--set", "data.executor=slurm", "--set", "data.slurm_partition=cpu"]
    assert submit(study, *on_slurm) == 0
    scripts = {p.stem: p.read_text() for p in (study / "jobs").glob("*.sbatch")}
    assert "--only data.filter --wait-data-jobs" in scripts["data.filter"]
    assert "--only data.tokenize --wait-data-jobs" in scripts["data.tokenize"]
    assert "data executor: slurm:" in scripts["data.filter"]
    assert "--wait-data-jobs" not in scripts["unfiltered.pretrain"]

    waited = []

    def pending(plan, step, wait_for_jobs=False):
        waited.append(wait_for_jobs)
        raise StagePending("logs/filter: 3 of 3 tasks not finished (slurm executor)")

    monkeypatch.setattr(actions, "_data", pending)
    by_hand = slurm / "by_hand"
    run = ["study", "run", "--recipe", "tiny_cpu_smoke", "--output-dir", str(by_hand), *on_slurm, "--only", "data.filter"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        main(run)
    assert stopped.value.code == 75 and waited == [False]
    assert "data.filter is pending" in capsys.readouterr().err
    assert not (by_hand / "steps" / "data.filter.done").exists()
    with pytest.raises(SystemExit):
        main(run + ["--wait-data-jobs"])
    assert waited == [False, True]
