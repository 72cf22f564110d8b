"""Run the science-critical mutants (`mutants.toml`): each must make its guarding tests fail.

A mutant is a one-line edit that reverses a piece of the study's direction (which letter counts as
misaligned, which reply DPO prefers, which documents a condition trains on, ...). For each one the runner
copies the working tree (git's tracked and untracked, not ignored, files) into a temporary directory,
applies the edit there, runs only the mutant's guarding tests against the copy, and deletes the copy. The
worktree is never modified. A mutant is *killed* when the guards fail (pytest exit status 1); it
*survives* when they pass; anything else (a guard that does not exist, a crash, a timeout) is an error.
A mutant whose original text is no longer in its file exactly once stops the run before anything is
copied, so a refactor cannot silently disable it: update the mutant to the new code.

    python -m tests.mutants.runner                 # all mutants, a table, exit status 1 unless all killed
    python -m tests.mutants.runner --only NAME ... --jobs 2 --keep
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MUTANTS_FILE = Path(__file__).with_name("mutants.toml")
PACKAGES = ("data_prep", "megatron_alignpt", "recipes")
"""Imported by the guards; the copy's own must shadow the editable install's."""
_NOT_COPIED = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", "build"}


class MutantError(Exception):
    """A mutant that cannot be applied as written (its target text is gone or ambiguous)."""


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    """Path relative to the repository root."""
    original: str
    """Exact text that must occur exactly once in ``file``."""
    mutated: str
    guards: tuple[str, ...]
    """pytest node ids (paths relative to the repository root) that must fail with the edit."""
    why: str


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str
    """``killed``, ``survived`` or ``error``."""
    seconds: float
    detail: str = ""

    @property
    def killed(self) -> bool:
        return self.status == "killed"


def load_mutants(path: Path = MUTANTS_FILE) -> list[Mutant]:
    with open(path, "rb") as handle:
        table = tomllib.load(handle)
    mutants = [Mutant(m["name"], m["file"], m["original"], m["mutated"], tuple(m["guards"]), m["why"])
               for m in table["mutant"]]
    names = [m.name for m in mutants]
    if len(set(names)) != len(names):
        raise MutantError(f"{path}: mutant names must be unique, got {sorted(names)}")
    return mutants


def mutated_source(mutant: Mutant, root: Path) -> str:
    """The mutant's file under ``root`` with the edit applied; MutantError unless the original occurs once."""
    path = root / mutant.file
    if not path.is_file():
        raise MutantError(f"mutant {mutant.name!r}: {mutant.file} does not exist")
    text = path.read_text(encoding="utf-8")
    count = text.count(mutant.original)
    if count != 1:
        raise MutantError(f"mutant {mutant.name!r}: its original text occurs {count} times in {mutant.file} "
                          f"(expected once): {mutant.original!r}; update the mutant to the current code")
    return text.replace(mutant.original, mutant.mutated)


def source_files(root: Path) -> list[Path]:
    """Files of the working tree as git sees it (tracked and untracked, not ignored); without git, every
    file outside the usual build and environment folders."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout
        names = [Path(n) for n in out.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):
        names = [p.relative_to(root) for p in root.rglob("*") if p.is_file()
                 and not _NOT_COPIED & set(p.relative_to(root).parts)]
    return [n for n in names if (root / n).is_file()]  # tracked files deleted in the worktree are skipped


def copy_tree(root: Path, dest: Path, files: list[Path]) -> None:
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)


def _env_for(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(copy)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "200"  # pytest's one-line failure summaries keep their message
    return env


def _check_imports_from(copy: Path, env: dict[str, str]) -> None:
    """The guards must test the copy's code, not the editable install's original tree."""
    code = "import sys, importlib; print('\\n'.join(importlib.import_module(p).__file__ for p in sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, *PACKAGES], cwd=copy, env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    outside = [f for f in out if not Path(f).resolve().is_relative_to(copy.resolve())]
    if outside:
        raise MutantError(f"the copy imports code from outside itself: {outside}")


def run_mutant(mutant: Mutant, root: Path, files: list[Path], timeout: float, keep: bool = False) -> Outcome:
    start = time.monotonic()
    copy = Path(tempfile.mkdtemp(prefix=f"alignpt-mutant-{mutant.name}-"))
    try:
        copy_tree(root, copy, files)
        (copy / mutant.file).write_text(mutated_source(mutant, root), encoding="utf-8")
        env = _env_for(copy)
        _check_imports_from(copy, env)
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "--tb=line", "-p", "no:cacheprovider", *mutant.guards]
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(mutant, "error", time.monotonic() - start, f"guards still running after {timeout:.0f} s")
    except (MutantError, subprocess.CalledProcessError) as err:
        return Outcome(mutant, "error", time.monotonic() - start, str(err))
    finally:
        if not keep:
            shutil.rmtree(copy, ignore_errors=True)
    status = {1: "killed", 0: "survived"}.get(proc.returncode, "error")
    if status == "killed":  # pytest's short summary: which guard failed, and on what
        detail = "\n".join(line for line in proc.stdout.splitlines()
                           if line.startswith(("FAILED", "ERROR")) or re.match(r"\S+\.py:\d+: ", line))
    else:
        detail = f"pytest exit status {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return Outcome(mutant, status, time.monotonic() - start, detail)


def run_mutants(mutants: list[Mutant], root: Path = REPO, jobs: int = 2, timeout: float = 600.0,
                keep: bool = False) -> list[Outcome]:
    """Every mutant against its guards, ``jobs`` at a time. Checks every target first: a stale mutant
    raises MutantError before any test runs."""
    for mutant in mutants:
        mutated_source(mutant, root)
    files = source_files(root)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda m: run_mutant(m, root, files, timeout, keep), mutants))


def format_table(outcomes: list[Outcome]) -> str:
    def short(node: str) -> str:
        return node.removeprefix("tests/unit/").removeprefix("tests/")

    rows = [("mutant", "guarding tests", "killed", "seconds")]
    rows += [(o.mutant.name, ", ".join(short(g) for g in o.mutant.guards),
              {"killed": "yes", "survived": "NO", "error": "error"}[o.status], f"{o.seconds:.0f}") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [" | ".join(r[i].ljust(widths[i]) for i in range(3)) + " | " + r[3] for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def report(outcomes: list[Outcome], verbose: bool = False) -> str:
    """The table, then what went wrong for every mutant that was not killed (with ``verbose``, also how
    each killed one was caught)."""
    parts = [format_table(outcomes)]
    for o in outcomes:
        if verbose or not o.killed:
            parts.append(f"\n{o.mutant.name} {o.status.upper()} ({o.mutant.file}): {o.mutant.why}\n{o.detail}")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="mutants run at once")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's guards")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (for debugging)")
    parser.add_argument("--list", action="store_true", help="list the mutants and what each guards against")
    parser.add_argument("--verbose", action="store_true", help="also show which guard killed each mutant, and how")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.only:
        unknown = set(args.only) - {m.name for m in mutants}
        if unknown:
            parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name}  ({m.file})\n    {m.why}\n    guards: {', '.join(m.guards)}")
        return 0
    start = time.monotonic()
    try:
        outcomes = run_mutants(mutants, jobs=args.jobs, timeout=args.timeout, keep=args.keep)
    except MutantError as err:
        print(f"mutants: {err}", file=sys.stderr)
        return 2
    print(report(outcomes, args.verbose))
    killed = sum(o.killed for o in outcomes)
    print(f"\n{killed}/{len(outcomes)} mutants killed in {time.monotonic() - start:.0f} s ({args.jobs} at a time)")
    return 0 if killed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
