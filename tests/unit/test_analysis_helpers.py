"""The notebooks' shared helpers (`study.analysis`): which studies, filters and averages that say what they do,
notes for missing combinations, exports."""
import json

import pandas as pd
import pytest

from megatron_alignpt.study.analysis import Notebook, ordered, studies_from_env


@pytest.fixture
def rows():
    return pd.DataFrame({
        "study": "s", "condition": ["a", "a", "b", "b", "a", "a"], "stage": ["base"] * 4 + ["post"] * 2,
        "system_prompt": ["none", "hhh", "none", "hhh", "none", "hhh"], "format": "w0:original",
        "scoring": ["logprob"] * 4 + ["generate"] * 2, "rate": [0.1, 0.3, 0.5, 0.7, 0.2, 0.4],
    })


def _nb(tmp_path, **env):
    return Notebook("nb", environ={"ALIGNPT_STUDY": str(tmp_path / "study"), **env})


def test_studies_from_the_environment(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "study.json").write_text(json.dumps({"name": "demo"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "study.json").write_text(json.dumps({"name": "demo"}))
    refs = studies_from_env({"ALIGNPT_STUDIES": f"{tmp_path / 'a'}:{tmp_path / 'b' / 'results' / 'misalignment.parquet'}"})
    assert [r.root for r in refs] == [tmp_path / "a", tmp_path / "b"]
    assert refs[0].name != refs[1].name and refs[0].name.startswith("demo (")  # same name: told apart by directory
    assert [r.root for r in studies_from_env({"ALIGNPT_RESULTS": str(tmp_path / "a/results/misalignment.parquet")})] == [tmp_path / "a"]
    assert studies_from_env({})[0].root.name == "demo"


def test_keep_says_what_it_kept_and_what_the_dropped_rows_were(tmp_path, rows, capsys):
    nb = _nb(tmp_path)
    kept = nb.keep(rows, rows["stage"] == "base", "base models")
    assert len(kept) == 4
    assert capsys.readouterr().out.strip() == "kept 4 of 6 rows: base models; dropped 2: scoring=generate (2); stage=post (2)"
    nb.keep(rows, (rows["condition"] == "a") | (rows["stage"] == "post"), "x")
    assert "dropped 2: condition=b (2)" in capsys.readouterr().out
    nb.keep(rows, ~((rows["condition"] == "a") & (rows["system_prompt"] == "hhh")), "y")
    assert "dropped 2: system_prompt+condition=hhh+a (2)" in capsys.readouterr().out


def test_mean_over_names_every_dimension_it_averages(tmp_path, rows, capsys):
    nb = _nb(tmp_path)
    base = rows[rows["stage"] == "base"]
    out = nb.mean_over(base, "rate", by=["condition"])
    assert out.set_index("condition")["rate"].to_dict() == pytest.approx({"a": 0.2, "b": 0.6})
    assert "averaged over system_prompt (none, hhh)" in capsys.readouterr().out
    nb.mean_over(base, "rate", by=["condition", "system_prompt"])
    assert "nothing averaged" in capsys.readouterr().out


def test_missing_combinations_become_notes(tmp_path, rows, monkeypatch):
    nb = _nb(tmp_path)
    gaps = nb.missing(rows, "test", condition=["a", "b"], stage=["base", "post"])
    assert gaps == [{"condition": "b", "stage": "post"}]
    assert nb.notes == ["test: no rows for condition=b, stage=post."]
    assert nb.missing(rows, "test", condition=["a"], stage=["base"]) == [] and len(nb.notes) == 1


def test_exports_go_beside_the_report(tmp_path, rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nb = _nb(tmp_path)
    assert nb.export_dir == tmp_path / "study" / "report_files" / "nb"
    nb.save_table(rows, "rows")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    nb.save_figure(fig, "line")
    assert pd.read_csv(nb.export_dir / "rows.csv").equals(rows)
    assert (nb.export_dir / "line.png").stat().st_size > 0 and (nb.export_dir / "line.svg").read_text().startswith("<?xml")
    other = _nb(tmp_path, ALIGNPT_EXPORT=str(tmp_path / "elsewhere"))
    assert other.export_dir == tmp_path / "elsewhere" / "nb"


def test_ordered():
    assert ordered(["b", "x", "a", "b"], ["a", "b", "c"]) == ["a", "b", "x"]
