"""The mutant table is current, the runner refuses stale mutants, and every mutant is killed (slow)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutants.runner import REPO, Mutant, MutantError, load_mutants, mutated_source, report, run_mutants, source_files


def test_every_mutant_targets_one_place_and_names_existing_guards():
    mutants = load_mutants()
    assert len(mutants) >= 12
    for m in mutants:
        mutated_source(m, REPO)  # raises unless the original occurs exactly once
        assert m.mutated != m.original and m.why and m.guards, m.name
        for guard in m.guards:
            assert (REPO / guard.split("::")[0]).is_file(), (m.name, guard)


def test_a_stale_or_ambiguous_target_stops_the_run(tmp_path):
    (tmp_path / "mod.py").write_text("x = 1\ny = 2\ny = 2\n")

    def mutant(original: str) -> Mutant:
        return Mutant("m", "mod.py", original, "x = 0", ("tests/unit/test_x.py",), "why")

    assert mutated_source(mutant("x = 1"), tmp_path) == "x = 0\ny = 2\ny = 2\n"
    with pytest.raises(MutantError, match="occurs 0 times"):
        run_mutants([mutant("x = 3")], root=tmp_path)
    with pytest.raises(MutantError, match="occurs 2 times"):
        mutated_source(mutant("y = 2"), tmp_path)
    with pytest.raises(MutantError, match="does not exist"):
        mutated_source(Mutant("m", "gone.py", "x", "y", (), "why"), tmp_path)


def test_copies_take_the_working_tree_without_environments():
    files = {str(p) for p in source_files(REPO)}
    assert "tests/mutants/mutants.toml" in files and "megatron_alignpt/eval/misalignment.py" in files
    assert not any(Path(f).parts[0] in (".venv", ".git", "runs") for f in files)


@pytest.mark.slow
def test_every_mutant_is_killed():
    """Each mutant applied to a temporary copy of the tree makes its guarding tests fail."""
    outcomes = run_mutants(load_mutants(), jobs=2)
    assert all(o.killed for o in outcomes), report(outcomes)
