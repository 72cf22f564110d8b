"""The GPU acceptance runner on CPU: every check isolated in its own process (a failing, crashing or hanging
check is recorded and the rest still run), the JSON summary, the targets, junit folding, the session script."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import gpu_acceptance as acc  # noqa: E402
from gpu_acceptance import Check  # noqa: E402

FAKES = '''"""Check functions for the runner's child processes (imports nothing heavy: the children start fast)."""
import os
import time

from gpu_acceptance import Skipped


def fake_pass(ctx):
    ctx.record(value=1)


def fake_fail(ctx):
    ctx.record(partial=2)
    raise AssertionError("losses differ by 0.5")


def fake_skip(ctx):
    raise Skipped("needs a Hopper GPU")


def fake_crash(ctx):
    ctx.record(before_crash=3)
    os._exit(3)


def fake_hang(ctx):
    ctx.record(started=True)
    time.sleep(600)


def fake_throughput(ctx, tokens_per_s):
    ctx.record(tokens_per_s=tokens_per_s, mfu=0.5, tflops_per_gpu=494.5, losses=[11.0, 7.0])
'''
ME = "acceptance_fakes"


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The fake checks as a module the children import (via PYTHONPATH, which the runner passes on)."""
    folder = tmp_path / "fakes"
    folder.mkdir()
    (folder / f"{ME}.py").write_text(FAKES)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return folder


def _checks() -> list[Check]:
    return [
        Check("passes", f"{ME}:fake_pass", 60),
        Check("fails", f"{ME}:fake_fail", 60),
        Check("skips", f"{ME}:fake_skip", 60),
        Check("crashes", f"{ME}:fake_crash", 60),
        Check("hangs", f"{ME}:fake_hang", 6),
        Check("throughput_te_bf16", f"{ME}:fake_throughput", 60, "throughput", kwargs={"tokens_per_s": 60000.0}),
    ]


def test_a_failing_crashing_or_hanging_check_is_recorded_and_the_rest_run(tmp_path, fakes):
    runner = acc.Runner(tmp_path / "out", tmp_path / "work", {"size": "tiny"}, budget_s=120, functional_s=90, jobs=3,
                        checks=_checks(), command="test")
    start = time.time()
    summary = runner.run()
    assert time.time() - start < 90  # the hanging check was ended at its 6 s limit

    on_disk = json.loads((tmp_path / "out" / acc.SUMMARY_FILE).read_text())
    assert on_disk["checks"] == json.loads(json.dumps(summary["checks"]))
    checks = on_disk["checks"]
    assert {name: c["status"] for name, c in checks.items()} == {
        "passes": "passed", "fails": "failed", "skips": "skipped", "crashes": "failed", "hangs": "failed",
        "throughput_te_bf16": "passed"}
    assert on_disk["counts"] == {"passed": 2, "failed": 3, "skipped": 1, "pending": 0}
    assert checks["passes"]["figures"] == {"value": 1}
    assert checks["fails"]["error"] == "AssertionError: losses differ by 0.5"
    assert checks["fails"]["figures"] == {"partial": 2}  # figures recorded before the failure are kept
    assert checks["skips"]["reason"] == "needs a Hopper GPU"
    assert "exited with code 3" in checks["crashes"]["error"] and checks["crashes"]["figures"] == {"before_crash": 3}
    assert "timed out after 6 s" in checks["hangs"]["error"] and checks["hangs"]["figures"] == {"started": True}
    for name, c in checks.items():
        assert (tmp_path / "out" / c["log"]).is_file() and c["seconds"] >= 0
        assert c["phase"] == ("throughput" if name.startswith("throughput") else "functional")
    assert "AssertionError: losses differ" in checks["fails"]["log_tail"]
    targets = on_disk["targets"]
    assert targets["bf16_mfu"] == {"value": 0.5, "target": ">= 0.52", "met": False, "what": acc.TARGETS["bf16_mfu"][2]}
    assert targets["bf16_vs_hf_compile"]["met"] is None  # no HF run in this test


def test_a_check_is_not_started_without_time_left(tmp_path, fakes):
    runner = acc.Runner(tmp_path / "out", tmp_path / "work", {}, budget_s=60, functional_s=60, jobs=1, checks=[])
    record = runner.run_child(Check("late", f"{ME}:fake_pass", 60), deadline=time.time() + 5)
    assert record["status"] == "skipped" and record["reason"] == (
        f"not started: {record['reason'].split()[2]} s left of the time budget, it needs about {acc.MIN_START_S} s")


def test_a_stopped_run_ends_the_running_check_and_starts_no_more(tmp_path, fakes):
    import threading

    checks = [Check("hangs", f"{ME}:fake_hang", 60), Check("after", f"{ME}:fake_pass", 60)]
    runner = acc.Runner(tmp_path / "out", tmp_path / "work", {}, budget_s=90, functional_s=90, jobs=1, checks=checks)

    def stop_once_running():
        started = tmp_path / "work" / "results" / "hangs.json"
        while not started.is_file():
            time.sleep(0.1)
        runner.stop(15)

    threading.Thread(target=stop_once_running, daemon=True).start()
    start = time.time()
    checks = runner.run()["checks"]
    assert time.time() - start < 40
    assert checks["hangs"]["status"] == "failed" and "stopped by signal 15" in checks["hangs"]["error"]
    assert checks["hangs"]["figures"] == {"started": True}
    assert checks["after"] == {**checks["after"], "status": "skipped",
                               "reason": "not started: the run was stopped by signal 15"}


def test_targets_from_the_throughput_figures():
    bf16 = {"tokens_per_s": 60000.0, "mfu": 0.53, "tflops_per_gpu": 524.0, "losses": [11.0, 6.60]}
    figures = {
        "throughput_te_bf16": bf16,
        "throughput_sdpa_bf16": {"tokens_per_s": 50000.0},
        "throughput_hf_compile": {"tokens_per_s": 50000.0},
        "throughput_hf_eager": {"tokens_per_s": 40000.0},
        "throughput_te_fp8_delayed": {"tokens_per_s": 84000.0, "losses": [11.0, 6.65]},
        "throughput_te_fp8_current": {"tokens_per_s": 66000.0, "losses": [11.0, 6.70]},
    }
    t = acc.evaluate_targets(figures)
    assert t["bf16_mfu"]["met"] and t["bf16_tflops_per_gpu"]["met"]
    assert t["bf16_vs_hf_compile"]["value"] == pytest.approx(1.2) and t["bf16_vs_hf_compile"]["met"]
    assert t["fp8_delayed_vs_bf16"]["value"] == pytest.approx(1.4) and t["fp8_delayed_vs_bf16"]["met"]
    assert t["fp8_current_vs_bf16"]["value"] == pytest.approx(1.1) and t["fp8_current_vs_bf16"]["met"] is False
    assert t["fp8_delayed_loss_vs_bf16"]["value"] == pytest.approx(0.05 / 6.6) and t["fp8_delayed_loss_vs_bf16"]["met"]
    assert t["fp8_current_loss_vs_bf16"]["met"] is False  # 1.5% off
    assert t["hf_compile_vs_hf_eager"]["value"] == pytest.approx(1.25) and t["hf_compile_vs_hf_eager"]["met"] is None
    assert t["paper_layer_tflops_vs_paper"]["value"] is None


def test_junit_results_are_folded_per_test(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.gpu.test_gpu_training" name="test_ok" time="1.5"/>'
        '<testcase classname="tests.gpu.test_gpu_parallel" name="test_bad" time="2"><failure message="boom">trace</failure></testcase>'
        '<testcase classname="tests.gpu.test_gpu_parallel" name="test_two" time="0"><skipped message="needs 2 GPUs"/></testcase>'
        '</testsuite></testsuites>')
    from acceptance_checks import parse_junit

    assert parse_junit(xml) == {
        "tests.gpu.test_gpu_training::test_ok": {"status": "passed", "seconds": 1.5, "message": ""},
        "tests.gpu.test_gpu_parallel::test_bad": {"status": "failed", "seconds": 2.0, "message": "boom"},
        "tests.gpu.test_gpu_parallel::test_two": {"status": "skipped", "seconds": 0.0, "message": "needs 2 GPUs"},
    }


def test_check_selection_and_defaults():
    names = [c.name for c in acc.default_checks()]
    assert len(names) == len(set(names))
    assert acc.select_checks(acc.default_checks(), "te_bf16_resume,dpo_margin", "dpo_margin")[0].name == "te_bf16_resume"
    with pytest.raises(SystemExit, match="unknown check"):
        acc.select_checks(acc.default_checks(), "no_such_check", "")
    import acceptance_checks

    for check in acc.default_checks():  # every target names a function that exists
        module, _, func = check.target.partition(":")
        assert module == "acceptance_checks" and callable(getattr(acceptance_checks, func))
    gpu = acc.default_options(gpu=True)
    assert (gpu["size"], gpu["global_batch"], gpu["warmup"] + gpu["steps"]) == ("1.4b", 16, 20)
    steps = acceptance_checks._study_steps(gpu["study_recipe"], Path("/tmp/unused"), [])
    assert steps[0] == "data.filter" and "align_upsampled.dpo" in steps and steps[-2:] == ["results", "report"]
    assert set(acceptance_checks.STUDY_STEP_NEEDS) | set(acceptance_checks.STUDY_LEFT_OUT) <= set(steps)


def test_session_script_is_valid_shell():
    script = BENCHMARKS / "gpu_session.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck not installed")
    res = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout
