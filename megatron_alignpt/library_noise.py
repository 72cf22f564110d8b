"""Keep library chatter out of users' output: they should see our progress lines, not the libraries'.

- Python warnings: torch.distributed.checkpoint's deprecations and megatron-core's notices about
  optional kernels it did not find (apex, Transformer Engine, fused ops) say nothing a user can act
  on; our own layout report says which kernels run.
- megatron-core's log records: it logs some notices on every model build (0.19: "GPTModel IS
  DEPRECATED ..." each time a GPTModel is constructed, i.e. once per pipeline chunk, reference
  model and evaluation). Records under the `megatron` logger go through one stderr handler that
  drops the notices listed below and prints any other message once per process.
Library code and tests that do not call `quiet_library_noise()` see everything.
"""
from __future__ import annotations

import logging
import sys
import warnings

IGNORED_WARNINGS = (
    "Apex", "apex", "Transformer Engine", "CUDA_DEVICE_MAX_CONNECTIONS", "fused", "full scope is deprecated",
    # megatron's optimizer reads `.grad` of its flat parameter-shard views (always None; it uses main_grad)
    "The .grad attribute of a Tensor that is not a leaf Tensor",
)
IGNORED_LOG_PREFIXES = (
    # we build GPTModel on purpose (HybridModel has no Pythia parallel-residual layer)
    "GPTModel IS DEPRECATED",
)


class OncePerMessage(logging.Filter):
    """Drops ignored notices, and any message already shown by this process."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(IGNORED_LOG_PREFIXES) or message in self.seen:
            return False
        self.seen.add(message)
        return True


_HANDLER_NAME = "alignpt-once"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (as logging's last-resort handler)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def quiet_library_noise() -> None:
    """Install the warning filters and the `megatron` log handler (idempotent)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    pattern = "|".join(text.replace(".", r"\.") for text in IGNORED_WARNINGS)
    warnings.filterwarnings("ignore", message=f".*({pattern}).*")
    logger = logging.getLogger("megatron")
    if any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
        return
    handler = _CurrentStderr()
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(logging.WARNING)
    handler.addFilter(OncePerMessage())
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
