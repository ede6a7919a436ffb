"""Bad input raises one clear error that names the module and what to do."""

import numpy as np
import pytest

import nnx


def x_of(shape, dtype=None):
    return nnx.asarray(np.ones(shape), dtype=dtype)


def test_wrong_width_names_both_shapes(device):
    with pytest.raises(nnx.ShapeError, match=r"Linear\(784, 10\).fprop: input has shape "
                                             r"\(2, 785\), expected \(batch, 784\)"):
        nnx.Linear(784, 10).fprop(x_of((2, 785)))


def test_one_dimensional_input(device):
    with pytest.raises(nnx.ShapeError, match=r"shape \(784,\), expected \(batch, 784\)"):
        nnx.Linear(784, 10).fprop(x_of((784,)))


def test_dtype_mismatch_is_an_error_not_a_silent_promotion(device):
    with pytest.raises(nnx.DTypeError, match="input dtype float64 differs from the "
                                             "parameters' float32"):
        nnx.Linear(3, 2).fprop(x_of((2, 3), dtype="float64"))


def test_non_array_input():
    with pytest.raises(TypeError, match=r"expected an array, got list; convert it with "
                                        r"nnx.asarray"):
        nnx.Tanh().fprop([[1.0, 2.0]])


@pytest.mark.parametrize("module", [nnx.Linear(3, 2), nnx.Tanh(), nnx.Softmax(),
                                    nnx.Sequential(nnx.Linear(3, 2), nnx.ReLU())])
def test_bprop_before_fprop(module):
    with pytest.raises(nnx.StateError, match=r"bprop called before fprop"):
        module.bprop(x_of((2, 2)))


def test_grad_output_of_the_wrong_shape():
    layer = nnx.Linear(3, 2)
    layer.fprop(x_of((4, 3)))
    with pytest.raises(nnx.ShapeError, match=r"grad_output has shape \(4, 3\), but fprop "
                                             r"returned \(4, 2\)"):
        layer.bprop(x_of((4, 3)))


def test_loss_bprop_before_fprop():
    with pytest.raises(nnx.StateError, match=r"SoftmaxCrossEntropy.bprop called before fprop"):
        nnx.SoftmaxCrossEntropy().bprop()


@pytest.mark.parametrize("bad", [[0, 1, 10], [-1, 0, 2]])
def test_labels_out_of_range(device, bad):
    z = x_of((3, 10))
    with pytest.raises(nnx.LabelError, match=r"labels must lie in \[0, 10\) for 10 classes, "
                                             r"got values from -?\d+ to \d+"):
        nnx.SoftmaxCrossEntropy().fprop(z, nnx.asarray(np.array(bad)))


def test_labels_of_the_wrong_length():
    with pytest.raises(nnx.ShapeError, match=r"integer labels have shape \(2,\), expected "
                                             r"\(3,\) for scores of shape \(3, 10\)"):
        nnx.SoftmaxCrossEntropy().fprop(x_of((3, 10)), nnx.asarray(np.array([1, 2])))


def test_targets_neither_labels_nor_onehot():
    with pytest.raises(nnx.ShapeError, match=r"give integer labels of shape \(3,\) or "
                                             r"one-hot of shape \(3, 10\)"):
        nnx.Hinge().fprop(x_of((3, 10)), x_of((3, 9)))


def test_mse_targets_shape():
    with pytest.raises(nnx.ShapeError, match=r"targets have shape \(3, 1\), expected \(3,\)"):
        nnx.MSE().fprop(x_of((3,)), x_of((3, 1)))


def test_integer_scores():
    with pytest.raises(nnx.DTypeError, match="scores must be floating point, got int64"):
        nnx.SoftmaxCrossEntropy().fprop(nnx.asarray(np.ones((2, 3), dtype=np.int64)),
                                        nnx.asarray(np.array([0, 1])))


@pytest.mark.parametrize("make, message", [
    (lambda net: nnx.SGD(net, lr=-0.1), r"SGD: lr must be a positive number, got -0.1"),
    (lambda net: nnx.SGD(net, lr=0.1, momentum=1.5), r"momentum must lie in \[0, 1.0\)"),
    (lambda net: nnx.Adam(net, betas=(0.9, 1.0)), r"betas\[1\] must lie in \[0, 1.0\)"),
])
def test_bad_optimiser_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make(nnx.Linear(2, 2))


def test_bad_layer_arguments():
    with pytest.raises(ValueError, match=r"Linear\(0, 3\): sizes must be positive"):
        nnx.Linear(0, 3)
    with pytest.raises(ValueError, match=r"Dropout\(p=1.0\): p is a drop probability"):
        nnx.Dropout(1.0)
    with pytest.raises(TypeError, match=r"Sequential: item 1 is a function, not an nnx module"):
        nnx.Sequential(nnx.Tanh(), lambda x: x)
