"""megatron-core's per-build notices are silenced or shown once; optional-kernel warnings are hidden."""
import logging
import warnings

import pytest

from megatron_alignpt import library_noise


@pytest.fixture
def quiet(capsys):
    logger = logging.getLogger("megatron")
    with warnings.catch_warnings():
        library_noise.quiet_library_noise()
        yield
    for handler in [h for h in logger.handlers if h.get_name() == library_noise._HANDLER_NAME]:
        logger.removeHandler(handler)
    logger.propagate = True


def test_per_build_notices_are_dropped_and_repeats_shown_once(quiet, capsys):
    gpt_logger = logging.getLogger("megatron.core.models.gpt.gpt_model")
    for _ in range(3):
        gpt_logger.warning("GPTModel IS DEPRECATED. GPTModel is only accepting critical bug fixes")
        logging.getLogger("megatron.core.optimizer").warning("grad norm is NaN")
    logging.getLogger("megatron.core.optimizer").info("an info record")
    err = capsys.readouterr().err
    assert "DEPRECATED" not in err and "info record" not in err
    assert err.count("grad norm is NaN") == 1


def test_optional_kernel_warnings_are_hidden_and_others_kept(quiet):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        library_noise.quiet_library_noise()
        warnings.warn("Apex is not installed. Falling back to Torch Norm", UserWarning)
        warnings.warn("The .grad attribute of a Tensor that is not a leaf Tensor is being accessed.", UserWarning)
        warnings.warn("your learning rate is negative", UserWarning)
    assert [str(w.message) for w in caught] == ["your learning rate is negative"]


def test_installing_twice_adds_one_handler(quiet):
    library_noise.quiet_library_noise()
    handlers = [h for h in logging.getLogger("megatron").handlers if h.get_name() == library_noise._HANDLER_NAME]
    assert len(handlers) == 1
