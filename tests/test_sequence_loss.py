"""SoftmaxCrossEntropy on sequence scores (N, T, V) with (N, T) integer labels: the mean
over all N·T positions, as torch's cross_entropy of the flattened positions; hostile input
refused with messages that name both shapes."""
import numpy as np
import pytest

import nnx


def host(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 1, 2), (4, 7, 3)])
def test_sequence_loss_matches_torch(device, shape):
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    if not nnx.device_of(nnx.asarray([1.0], device=device)).backend.has_float64(
            nnx.device_of(nnx.asarray([1.0], device=device)).native):
        pytest.skip(f"{device} has no float64")
    z = host(shape)
    t = np.random.default_rng(1).integers(0, shape[2], shape[:2])
    loss = nnx.SoftmaxCrossEntropy()
    value = loss.fprop(nnx.asarray(z, device=device, dtype="float64"),
                       nnx.asarray(t, device=device))
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt.reshape(-1, shape[2]),
                                             torch.tensor(t).reshape(-1))
    want.backward()
    assert float(value) == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(loss.bprop()), zt.grad.numpy(), rtol=1e-12,
                               atol=1e-14)


def test_sequence_loss_gradcheck():
    z = nnx.asarray(host((3, 4, 5)), dtype="float64")
    t = nnx.asarray(np.random.default_rng(2).integers(0, 5, (3, 4)))
    assert nnx.gradcheck(nnx.SoftmaxCrossEntropy(), z, t)


def test_sequence_loss_equals_the_rows_loss():
    """(N, T, V) is the (N·T, V) loss of the same positions (the NumPy fast path there)."""
    z, t = host((3, 4, 5)), np.random.default_rng(2).integers(0, 5, (3, 4))
    seq, rows = nnx.SoftmaxCrossEntropy(), nnx.SoftmaxCrossEntropy()
    a = seq.fprop(nnx.asarray(z, dtype="float64"), nnx.asarray(t))
    b = rows.fprop(nnx.asarray(z.reshape(12, 5), dtype="float64"), nnx.asarray(t.reshape(12)))
    assert float(a) == pytest.approx(float(b), rel=1e-13)
    np.testing.assert_allclose(nnx.to_numpy(seq.bprop()).reshape(12, 5),
                               nnx.to_numpy(rows.bprop()), rtol=1e-13)


@pytest.mark.parametrize("t, error, match", [
    (np.zeros((3, 5), dtype=np.int64), nnx.ShapeError,
     r"integer labels have shape \(3, 5\), expected \(3, 4\) for scores of shape \(3, 4, 5\)"),
    (np.full((3, 4), 5), nnx.LabelError, r"labels must lie in \[0, 5\) for 5 classes"),
    (np.full((3, 4), -1), nnx.LabelError, r"labels must lie in \[0, 5\)"),
    (np.zeros((3, 4, 5)), nnx.DTypeError, r"take integer labels of shape \(3, 4\)"),
    (np.zeros((3, 4), dtype=bool), nnx.DTypeError, r"take integer labels of shape \(3, 4\)")])
def test_sequence_loss_refuses_bad_labels(t, error, match):
    loss = nnx.SoftmaxCrossEntropy()
    with pytest.raises(error, match=match):
        loss.fprop(nnx.asarray(host((3, 4, 5)), dtype="float64"), nnx.asarray(t))


def test_sequence_loss_float16_and_uint8_labels():
    z, t = host((2, 3, 4)), np.random.default_rng(3).integers(0, 4, (2, 3))
    ref = nnx.SoftmaxCrossEntropy()
    want = float(ref.fprop(nnx.asarray(z, dtype="float64"), nnx.asarray(t)))
    loss = nnx.SoftmaxCrossEntropy()
    got = loss.fprop(nnx.asarray(z, dtype="float16"), nnx.asarray(t.astype(np.uint8)))
    assert float(got) == pytest.approx(want, rel=2e-3)
    assert loss.bprop().dtype == nnx.asarray(z, dtype="float16").dtype


@pytest.mark.parametrize("classes", [5, 600], ids=["cached-eye", "many-classes"])
def test_label_loss_matches_torch_with_a_minus_inf_score(device, classes):
    """The one-hot comes from a cached eye(C)/N up to 512 classes and from a comparison
    beyond; either way a -inf score away from the label (a masked class) leaves the loss
    finite, as torch's."""
    torch = pytest.importorskip("torch", reason="torch is not installed: no PyTorch reference")
    if not nnx.device_of(nnx.asarray([1.0], device=device)).backend.has_float64(
            nnx.device_of(nnx.asarray([1.0], device=device)).native):
        pytest.skip(f"{device} has no float64")
    z = host((4, classes))
    t = np.array([0, 3, 1, 2])
    z[0, 1] = -np.inf
    loss = nnx.SoftmaxCrossEntropy()
    value = loss.fprop(nnx.asarray(z, device=device, dtype="float64"), nnx.asarray(t, device=device))
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt, torch.tensor(t))
    want.backward()
    assert float(value) == pytest.approx(want.item(), rel=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(loss.bprop()), zt.grad.numpy(), rtol=1e-12,
                               atol=1e-15)
