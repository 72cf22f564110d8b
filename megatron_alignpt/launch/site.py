"""Site settings for Slurm jobs: where to run, which image, what to mount, which environment.

A site file is TOML (or JSON) with any of the fields of `SiteConfig`; see
`containers/site.example.toml`. It is found by `--site FILE`, else `$ALIGNPT_SITE`; command-line flags
(`--partition`, `--account`, `--time`, `--image`, `--mounts`, `--gpus-per-node`) override it.

Secrets never go in a site file or a rendered script: list the *names* of variables to pass through
in `container_env` (default WANDB_API_KEY, HF_TOKEN); sbatch exports the submitter's values to the job.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from megatron_alignpt.config_base import ConfigError, from_dict, require

SITE_ENV = "ALIGNPT_SITE"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET = re.compile(r"(^|_)(API|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.IGNORECASE)


def default_env() -> dict[str, str]:
    """Process settings every job gets unless the site file overrides them."""
    return {
        "NCCL_DEBUG": "WARN",
        "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1",  # fail fast on a broken collective instead of hanging
        "CUDA_DEVICE_MAX_CONNECTIONS": "1",  # megatron's tensor-parallel comm/compute overlap needs it
        "PYTHONUNBUFFERED": "1",
    }


@dataclass
class SiteConfig:
    partition: str = ""
    """GPU partition (empty: the cluster's default)."""
    account: str = ""
    time: str = "04:00:00"
    """Wall time per job. Long stages need not fit: they checkpoint before the limit and requeue."""
    gpus_per_node: int = 8
    cpus_per_task: int = 0
    """CPUs for the one task per node of a GPU step (torchrun and its workers); 0 leaves Slurm's default.
    Set it (e.g. all cores of a node): newer Slurm gives a step 1 CPU per task unless told otherwise."""
    cpu_partition: str = ""
    """Partition for CPU-only steps (data preparation, results, report); empty: `partition`."""
    cpu_cpus_per_task: int = 16
    image: str = ""
    """Training image for pyxis, e.g. `/lustre/images/alignpt.sqsh` or `registry#org/alignpt:0.1`;
    empty runs the steps in the batch script's own environment (no container)."""
    prep_image: str = ""
    """Image for the data-preparation steps (the torch-free `Dockerfile.prep`); empty: `image`."""
    mounts: list[str] = field(default_factory=list)
    """pyxis `--container-mounts` entries, `SRC:DST[:FLAGS]`. Mount the study directory at the same path."""
    workdir: str = ""
    """pyxis `--container-workdir` (empty: the image's WORKDIR)."""
    container_env: list[str] = field(default_factory=lambda: ["WANDB_API_KEY", "HF_TOKEN"])
    """Names of variables passed from the submitter's environment into the container (values never rendered)."""
    env: dict[str, str] = field(default_factory=default_env)
    """Variables set in every job (NCCL interfaces, caches); merged over `default_env()`."""
    sbatch: list[str] = field(default_factory=list)
    """Extra `#SBATCH` options, e.g. `--qos=high`, `--reservation=x`, `--constraint=h100`."""
    srun: list[str] = field(default_factory=list)
    """Extra srun options for the step, `--opt=value` form (e.g. `--no-container-mount-home`)."""
    setup: list[str] = field(default_factory=list)
    """Shell lines run in the batch script before the step (e.g. `module load ...`)."""
    exclusive: bool = True
    """Whole nodes for training steps."""
    rdzv_port: int = 29500
    signal_seconds: int = 300
    """Slurm sends USR1 this long before the time limit; the step checkpoints and the job requeues."""
    max_requeues: int = 50

    def __post_init__(self) -> None:
        require(self.gpus_per_node >= 1, "site.gpus_per_node", "must be >= 1")
        require(self.cpus_per_task >= 0, "site.cpus_per_task", "must be >= 0 (0: Slurm's default)")
        require(self.cpu_cpus_per_task >= 1, "site.cpu_cpus_per_task", "must be >= 1")
        require(0 < self.rdzv_port < 65536, "site.rdzv_port", "must be a TCP port")
        require(self.signal_seconds >= 30, "site.signal_seconds", "allow at least 30 s to checkpoint")
        require(self.max_requeues >= 0, "site.max_requeues", "must be >= 0")
        for name in self.container_env:
            require(bool(_NAME.match(name)), "site.container_env", f"{name!r} is not a variable name")
        env = {**default_env(), **self.env}
        for name in env:
            require(bool(_NAME.match(name)), "site.env", f"{name!r} is not a variable name")
            require(not _SECRET.search(name), f"site.env.{name}",
                    "looks like a secret: list its name in container_env and export it before submitting")
        self.env = env
        for option in self.sbatch + self.srun:
            require(option.startswith("--") and "\n" not in option, "site.sbatch/srun", f"{option!r}: use --option=value")

    @property
    def cpu_partition_or_default(self) -> str:
        return self.cpu_partition or self.partition

    def read_only_mount(self, path: str | Path) -> Optional[str]:
        """The `mounts` entry that makes ``path`` read-only inside the container (the most specific mount
        whose destination holds ``path`` decides), or None. Without an image nothing is mounted."""
        if not (self.image or self.prep_image):
            return None
        target = Path(path)
        best: tuple[int, str, bool] | None = None
        for entry in self.mounts:
            parts = entry.split(":")
            dst = Path(parts[1] if len(parts) > 1 and parts[1] else parts[0])
            flags = set(re.split(r"[+,]", parts[2])) if len(parts) > 2 else set()
            if (target == dst or dst in target.parents) and (best is None or len(dst.parts) > best[0]):
                best = (len(dst.parts), entry, "ro" in flags)
        return best[1] if best and best[2] else None

    def check_writable(self, path: str | Path, what: str = "output_dir") -> None:
        """Refuse a study directory the jobs could not write (a read-only container mount)."""
        entry = self.read_only_mount(path)
        if entry is not None:
            raise ConfigError(f"{what} {path}: the site's container mounts make it read-only ({entry!r}), so the jobs "
                              "could not write there; pass --output-dir on a writable filesystem every node mounts")

    def with_overrides(self, **values: Optional[object]) -> "SiteConfig":
        """A copy with every non-None value replaced (command-line flags over the site file)."""
        changes = {k: v for k, v in values.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self


def read_site_file(path: Path) -> SiteConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"site file {path} not found")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except (json.JSONDecodeError, ValueError) as err:
        raise ConfigError(f"{path}: {err}") from err
    return from_dict(SiteConfig, data, source=path)


def load_site(path: Optional[str | Path] = None) -> SiteConfig:
    """The site file given, else $ALIGNPT_SITE, else defaults."""
    path = path or os.environ.get(SITE_ENV)
    return read_site_file(Path(path)) if path else SiteConfig()


def add_site_arguments(parser) -> None:
    """The flags `alignpt launch` and `alignpt study submit` share (each overrides the site file)."""
    parser.add_argument("--site", help=f"site settings, TOML or JSON (default: ${SITE_ENV})")
    parser.add_argument("--partition")
    parser.add_argument("--account")
    parser.add_argument("--time", help="wall time per job, e.g. 04:00:00 (long stages requeue)")
    parser.add_argument("--image", help="container image for pyxis, e.g. /lustre/images/alignpt.sqsh")
    parser.add_argument("--mounts", help="comma-separated SRC:DST container mounts")
    parser.add_argument("--gpus-per-node", type=int)


def site_from_args(args) -> SiteConfig:
    mounts = [m for m in args.mounts.split(",") if m] if args.mounts is not None else None
    return load_site(args.site).with_overrides(
        partition=args.partition, account=args.account, time=args.time, image=args.image, mounts=mounts,
        gpus_per_node=args.gpus_per_node,
    )
