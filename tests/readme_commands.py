"""The README's CLI walkthrough: the bash blocks of its "The CLI" section, as a script."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def cli_section(text: str | None = None) -> str:
    text = README.read_text() if text is None else text
    start = text.index("\n## The CLI\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def cli_script(text: str | None = None) -> str:
    """The section's ```bash blocks joined, in order."""
    return "\n".join(re.findall(r"```bash\n(.*?)```", cli_section(text), re.S))


def commands(text: str | None = None) -> list[str]:
    """One entry per command (continuation lines joined, comments dropped)."""
    joined = cli_script(text).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(" ".join(line.split()))
    return out
