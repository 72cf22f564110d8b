"""The CPU stand-ins for megatron code written for CUDA tensors (see megatron_alignpt/cpu_compat.py)."""
import pytest
import torch

from megatron_alignpt import cpu_compat

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU stand-ins")


def test_cuda_code_runs_on_cpu_tensors_inside_the_context_only():
    t = torch.zeros(3)
    with cpu_compat.cuda_code_on_cpu():
        assert t.type() == "torch.cuda.FloatTensor"
        assert torch.zeros(2, dtype=torch.bfloat16).type() == "torch.cuda.BFloat16Tensor"
        assert t.cuda() is t
        assert torch.ones(2, device="cuda").device.type == "cpu"
        assert t.type(torch.float64).dtype == torch.float64  # conversions are untouched
    assert t.type() == "torch.FloatTensor"
    with pytest.raises((AssertionError, RuntimeError)):
        torch.ones(2, device="cuda")


def test_run_on_cpu_wraps_every_method_call():
    class NeedsCuda:
        flag = 1

        def kind(self, tensor):
            return tensor.type()

    wrapped = cpu_compat.run_on_cpu(NeedsCuda())
    assert wrapped.kind(torch.zeros(1)) == "torch.cuda.FloatTensor"
    assert wrapped.flag == 1
    wrapped.flag = 2
    assert wrapped._target.flag == 2


def test_megatron_multi_tensor_kernels_point_at_torch_implementations(monkeypatch):
    """With TE or apex installed megatron binds their CUDA kernels at import; CPU runs use its own."""
    from megatron.core import utils
    from megatron.core.optimizer import clip_grads, optimizer

    def cuda_only(*args, **kwargs):
        raise RuntimeError("CUDA kernel called on CPU tensors")

    for module in (clip_grads, optimizer):
        monkeypatch.setattr(module, "multi_tensor_applier", cuda_only)
        monkeypatch.setattr(module, "multi_tensor_scale_impl", cuda_only)
    monkeypatch.setattr(clip_grads, "l2_norm_impl", cuda_only)
    cpu_compat.use_local_multi_tensor_kernels()
    assert clip_grads.l2_norm_impl is utils.local_multi_tensor_l2_norm
    assert optimizer.multi_tensor_applier is utils.local_multi_tensor_applier
    param = torch.nn.Parameter(torch.ones(4))
    param.grad = torch.full((4,), 2.0)
    with cpu_compat.cuda_code_on_cpu():
        clip_grads.clip_grad_by_total_norm_fp32([param], max_norm=1.0, total_norm=4.0)
    assert param.grad.tolist() == pytest.approx([0.5] * 4, rel=1e-5)
