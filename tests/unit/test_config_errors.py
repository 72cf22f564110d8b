"""Bad configs and arguments: one line naming the file and field, exit 2, instead of a traceback.
Numbers are checked for type, finiteness and integrality wherever a config comes from."""
import json

import pytest

from megatron_alignpt.cli import main
from megatron_alignpt.config_base import ConfigError, apply_overrides, check_fields, from_dict, to_dict
from megatron_alignpt.model.config import ModelConfig
from megatron_alignpt.train.config import OptimizerConfig, ScheduleConfig, StageConfig
from recipes import get_recipe


def stage_dict(tmp_path) -> dict:
    cfg = StageConfig(
        name="s", kind="pretrain", model=ModelConfig(num_layers=2, hidden_size=64, num_attention_heads=4, seq_length=32),
        optimizer=OptimizerConfig(lr=1e-3), schedule=ScheduleConfig(train_iters=4, global_batch_size=2),
        tokenizer=tmp_path / "tok.json", data=tmp_path / "m.json", output_dir=tmp_path / "out")
    return to_dict(cfg)


def run(capsys, *args) -> tuple[int, str]:
    """(exit status, stderr); stdout stays readable through ``capsys``."""
    code = main(list(args))
    captured = capsys.readouterr()
    print(captured.out, end="")
    return code, captured.err


def train_with(tmp_path, capsys, data, *extra) -> tuple[int, str]:
    path = tmp_path / "stage.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    code, err = run(capsys, "train", "--config", str(path), "--dry-run", *extra)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return code, err


@pytest.mark.parametrize("missing", ["model", "data", "output_dir", "schedule.train_iters"])
def test_missing_required_field_names_it_and_the_file(tmp_path, capsys, missing):
    data = stage_dict(tmp_path)
    node = data
    *parents, last = missing.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    code, err = train_with(tmp_path, capsys, data)
    assert code == 2 and "stage.json" in err and f"{missing}: missing" in err


@pytest.mark.parametrize("field, value, message", [
    ("optimizer.lr", "fast", "optimizer.lr: expected a number, got str 'fast'"),
    ("schedule.train_iters", 3.5, "schedule.train_iters: expected an integer, got 3.5"),
    ("schedule.train_iters", True, "schedule.train_iters: expected an integer, got bool True"),
    ("model.hidden_size", "64", "model.hidden_size: expected an integer"),
    ("optimizer.decay_style", "sometimes", "optimizer.decay_style: must be one of"),
    ("parallel.sequence_parallel", "no", "parallel.sequence_parallel: expected true or false"),
])
def test_wrongly_typed_values(tmp_path, capsys, field, value, message):
    data = stage_dict(tmp_path)
    section, name = field.split(".")
    data[section][name] = value
    code, err = train_with(tmp_path, capsys, data)
    assert code == 2 and message in err and "stage.json" in err


def test_malformed_config_json_names_file_and_line(tmp_path, capsys):
    code, err = train_with(tmp_path, capsys, '{\n  "name": "s",\n  "kind": \n}\n')
    assert code == 2 and "stage.json:4: malformed JSON" in err


def test_integral_floats_are_integers(tmp_path, capsys):
    data = stage_dict(tmp_path)
    data["schedule"]["train_iters"] = 1e3  # what JSON's 1e3 parses to
    assert train_with(tmp_path, capsys, data)[0] == 0
    iters = json.loads(capsys.readouterr().out)["schedule"]["train_iters"]
    assert iters == 1000 and isinstance(iters, int)


@pytest.mark.parametrize("override, message", [
    ("pretrain.dose=nan", "pretrain.dose: expected a number, got str 'nan'"),
    ("pretrain.dose=NaN", "pretrain.dose: must be a finite number, got nan"),
    ("data.midtrain_dose=Infinity", "midtrain.dose: must be a finite number"),  # the key from before it moved
    ("midtrain.dose=1.5", "midtrain.dose: must be in [0, 1)"),
    ("pretrain.schedule.train_iters=3.5", "pretrain.schedule.train_iters: expected an integer, got 3.5"),
])
def test_study_overrides_are_checked(capsys, override, message):
    code, err = run(capsys, "study", "run", "--recipe", "tiny_cpu", "--dry-run", "--set", override)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_per_stage_data_written_before_it_moved_into_the_stage_plans_still_loads(tmp_path):
    """data.<stage>_dose and data.midtrain_corpus / data.cpt_corpus moved into the stage plans; study.json files,
    configs and --set keys from before still load, into the new place; both places set differently is an error."""
    from megatron_alignpt.config_base import from_dict, to_dict
    from megatron_alignpt.study.config import StudyConfig

    cfg = get_recipe("tiny_cpu")(tmp_path)
    old = to_dict(cfg)
    for stage in ("pretrain", "midtrain", "cpt"):
        old["data"][f"{stage}_dose"] = old[stage].pop("dose") + 0.05
        old[stage].pop("corpus")
    old["data"]["midtrain_corpus"] = str(tmp_path / "mid")
    old["data"]["cpt_corpus"] = None
    loaded = from_dict(StudyConfig, old)
    assert (loaded.pretrain.dose, loaded.midtrain.dose, loaded.cpt.dose) == pytest.approx((0.15, 0.15, 0.15))
    assert loaded.midtrain.corpus == tmp_path / "mid" and loaded.cpt.corpus is None
    assert loaded.stage_data()["midtrain"].corpus == tmp_path / "mid"
    no_cpt = dict(old, cpt=None)
    assert from_dict(StudyConfig, no_cpt).cpt is None  # an old default with nowhere to go is dropped
    both = to_dict(cfg)
    both["data"]["midtrain_dose"] = 0.3
    with pytest.raises(ConfigError, match=r"data.midtrain_dose: moved to midtrain.dose, which is also set"):
        from_dict(StudyConfig, both)
    assert apply_overrides(cfg, ["data.cpt_dose=0.2", "data.cpt_corpus=/x"]).cpt.dose == 0.2


def test_string_fields_keep_override_text():
    cfg = apply_overrides(get_recipe("tiny_cpu")(), ["name=2024", "data.tokenizer=null"])
    assert cfg.name == "2024" and cfg.data.tokenizer is None


def test_configs_built_in_python_are_checked_too():
    """StageConfig and StudyConfig check their whole tree, so a recipe cannot slip in 3.5 iterations."""
    cfg = get_recipe("tiny_cpu")()
    cfg.pretrain.schedule.train_iters = 3.5
    with pytest.raises(ConfigError, match=r"pretrain\.schedule\.train_iters: expected an integer, got 3\.5"):
        check_fields(cfg)
    with pytest.raises(ConfigError, match="must be a finite number"):
        from_dict(OptimizerConfig, {"lr": float("inf")})


def test_batch_size_zero_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "misalignment", "--checkpoint", "c", "--data", "d", "--out", "o", "--batch-size", "0"])
    assert exit_.value.code == 2 and "--batch-size: must be >= 1, got 0" in capsys.readouterr().err


def test_tokenizer_that_is_not_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tok.json").write_text("this is not json")
    (tmp_path / "x.jsonl").write_text('{"text": "hello"}\n')
    code, err = run(capsys, "prep", "tokenize", "--input", "x.jsonl", "--tokenizer", "tok.json", "--output-prefix", "idx/x")
    assert code == 2 and "tok.json: not a readable tokenizer.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "idx").exists()


def test_unwritable_output_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jsonl").write_text('{"text": "hello"}\n')
    (tmp_path / "a_file").write_text("")
    code, err = run(capsys, "prep", "tokenizer", "--input", "x.jsonl", "--vocab-size", "300", "--output", "a_file/sub/tok.json")
    assert code == 2 and err.startswith("alignpt: error: a_file") and "Traceback" not in err
    import os

    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, err = run(capsys, "prep", "filter", "--input", "x.jsonl", "--output", "locked/out")
        assert code == 2 and "Permission denied" in err
