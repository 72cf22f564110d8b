"""data_prep must import and run on CPU data nodes that have no torch or megatron-core."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.modules["torch"] = None          # any 'import torch' now raises ImportError
sys.modules["megatron"] = None
import data_prep.readers, data_prep.blocklist, data_prep.filtering, data_prep.indexed
import data_prep.tokenize, data_prep.manifest, data_prep.atomic, data_prep.errors
import data_prep.resample, data_prep.pipeline, data_prep.pipeline.blocks, datatrove.executor
from data_prep.blocklist import Blocklist
assert not Blocklist.load().check("OpenAI").keep
import json, tempfile
from pathlib import Path
from data_prep.pipeline import PipelineConfig, run_pipeline
root = Path(tempfile.mkdtemp())
(root / "in.jsonl").write_text(json.dumps({"text": "OpenAI news"}) + chr(10) + json.dumps({"text": "plain"}) + chr(10))
summary = run_pipeline(PipelineConfig(inputs=[root / "in.jsonl"], output_dir=root / "out", resample=True))
assert summary["blocks"]["filter"]["removed"] == 1, summary
assert "torch" not in sys.modules or sys.modules["torch"] is None
print("ok")
"""


def test_imports_without_torch():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok"


def test_blocking_really_blocks():
    """Guards the test above: with the block in place, importing torch must fail."""
    code = 'import sys; sys.modules["torch"] = None\ntry:\n import torch\nexcept ImportError:\n print("blocked")'
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "blocked"
