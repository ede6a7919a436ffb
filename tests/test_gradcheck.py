"""Every module and loss, on every backend, in float64 (tight) and float32 (loose)."""

import numpy as np
import pytest

import nnx
from cases import LOSSES, MODULES, WIDTH, BATCH, as_device, module_input

DTYPES = ["float64", "float32"]


# In float32 the finite step is h ~ 3e-4: a hidden ReLU/PReLU input that lands within h of
# its kink makes the difference quotient meaningless.  Single kinked layers get inputs away
# from zero (cases.away_from_zero); a deep net's hidden values cannot be steered, so the
# kinked deep net is checked in float64 only (h ~ 1.5e-8).
CASES = [(name, dtype) for name in MODULES for dtype in DTYPES
         if not (name == "MLP-deep" and dtype == "float32")]


@pytest.mark.parametrize("name, dtype", CASES)
def test_module_gradients(device, name, dtype):
    module = MODULES[name]()
    x = as_device(module_input(name, np.random.default_rng(1)), dtype)
    result = nnx.gradcheck(module, x, dtype=dtype)
    assert result.ok and result.checked > 0, result


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradients(device, name, dtype):
    make_loss, scores, targets = LOSSES[name]
    rng = np.random.default_rng(2)
    z, t = as_device(scores(rng), dtype), as_device(targets(rng), dtype)
    result = nnx.gradcheck(make_loss(), z, t, dtype=dtype)
    assert result.ok and result.checked == int(np.prod(z.shape)), result


def test_random_direction_check_on_a_large_module(device):
    net = nnx.Sequential(nnx.Linear(300, 64), nnx.Tanh(), nnx.Linear(64, 10))
    x = nnx.asarray(np.random.default_rng(3).standard_normal((8, 300)))
    assert nnx.gradcheck(net, x, mode="direction").ok


def test_sampling_covers_every_parameter():
    net = nnx.Sequential(nnx.Linear(50, 40), nnx.Tanh(), nnx.Linear(40, 10))
    result = nnx.gradcheck(net, nnx.asarray(np.ones((2, 50))), samples=5)
    # 5 rows x 5 columns for the input and for each of the four parameter tensors
    assert result.checked == 5 * 5 * 5


class BrokenTanh(nnx.Tanh):
    def bprop(self, grad_output, *, need_input_grad=True):
        return super().bprop(grad_output) * 1.01     # a 1% error in the Jacobian


def test_gradcheck_catches_a_wrong_bprop():
    x = nnx.asarray(np.random.default_rng(4).standard_normal((3, 4)))
    with pytest.raises(nnx.GradcheckError, match=r"BrokenTanh\(\).*FAILED.*d y\["):
        nnx.gradcheck(BrokenTanh(), x)
    result = nnx.gradcheck(BrokenTanh(), x, raise_on_failure=False)
    assert not result.ok and 0.005 < result.max_rel_error < 0.02


def test_gradcheck_leaves_the_module_unchanged():
    net = nnx.Linear(4, 2)
    before = [nnx.to_numpy(p).copy() for p in net.params()]
    nnx.gradcheck(net, nnx.asarray(np.ones((2, 4))))
    for b, p in zip(before, net.params()):
        np.testing.assert_array_equal(b, nnx.to_numpy(p))
    assert net.dtype == nnx.asarray(np.ones(1)).dtype      # still float32
