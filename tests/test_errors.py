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


class _OldStyleCube(nnx.Module):
    """A layer written before the layer-author helpers got public names."""

    def fprop(self, x):
        self.x = x
        self._out_shape = tuple(x.shape)      # (old name)
        return x * x * x

    def bprop(self, grad_output, *, need_input_grad=True):
        self.check_grad(grad_output)
        return 3.0 * self.x * self.x * grad_output


def test_a_layer_that_sets_the_old_out_shape_name_is_told_the_new_one():
    layer = _OldStyleCube()
    layer.fprop(x_of((2, 3)))
    with pytest.raises(nnx.StateError, match=r"_OldStyleCube\(\).fprop set self._out_shape; "
                                             r"the attribute is called out_shape now"):
        layer.bprop(x_of((2, 3)))


def test_the_layer_author_helpers_have_public_names():
    for name in ("init_params", "check_input", "check_array", "check_grad"):
        assert callable(getattr(nnx.Module, name)), name
        assert not hasattr(nnx.Module, "_" + name), name
    assert nnx.Module.out_shape is None


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
    (lambda net: nnx.SGD(net, lr=-0.1), r"SGD: lr must be a finite number >= 0, got -0.1"),
    (lambda net: nnx.SGD(net, lr=0.1, momentum=1.5), r"momentum must lie in \[0, 1\), got 1.5"),
    (lambda net: nnx.Adam(net, betas=(0.9, 1.0)), r"betas\[1\] must lie in \[0, 1\)"),
])
def test_bad_optimiser_settings(make, message):
    with pytest.raises(nnx.ArgumentError, match=message):
        make(nnx.Linear(2, 2))


def test_bad_layer_arguments():
    with pytest.raises(nnx.ArgumentError, match=r"Linear: n_in must be a positive integer, got 0"):
        nnx.Linear(0, 3)
    with pytest.raises(nnx.ArgumentError, match=r"Dropout: p must lie in \[0, 1\), got 1.0"):
        nnx.Dropout(1.0)
    with pytest.raises(TypeError, match=r"Sequential: item 1 is a function, not an nnx module"):
        nnx.Sequential(nnx.Tanh(), lambda x: x)


def test_gradcheck_needs_arrays_and_a_known_mode():
    with pytest.raises(TypeError, match=r"gradcheck: the input must be an array"):
        nnx.gradcheck(nnx.Tanh(), [[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"mode is 'entries' or 'direction', not 'bogus'"):
        nnx.gradcheck(nnx.Tanh(), x_of((1, 2)), mode="bogus")


def test_set_params_checks_count_and_shapes():
    net = nnx.Sequential(nnx.Linear(3, 2), nnx.Tanh())
    with pytest.raises(nnx.ShapeError, match=r"got 1 arrays for 2 parameters"):
        net.set_params([x_of((3, 2))])
    with pytest.raises(nnx.ShapeError, match=r"0.W needs shape \(3, 2\), got \(2, 3\)"):
        net.set_params([x_of((2, 3)), x_of((2,))])


def test_set_params_moves_the_module_to_the_arrays_device():
    layer = nnx.Linear(3, 2, device="strict")
    layer.set_params([nnx.asarray(np.ones((3, 2)), device="strict:device1"),
                      nnx.asarray(np.zeros(2), device="strict:device1")])
    with pytest.raises(nnx.DeviceError, match=r"input is on strict but parameters are on "
                                              r"strict:device1"):
        layer.fprop(nnx.asarray(np.ones((1, 3)), device="strict"))


def test_grad_output_on_another_device_or_dtype():
    layer = nnx.Linear(3, 2, device="strict:device1")
    layer.fprop(nnx.asarray(np.ones((1, 3)), device="strict:device1"))
    with pytest.raises(nnx.DeviceError, match=r"bprop: grad_output is on strict but "
                                              r"parameters are on strict:device1"):
        layer.bprop(nnx.asarray(np.ones((1, 2)), device="strict"))
    with pytest.raises(nnx.DTypeError, match=r"grad_output dtype float64 differs from the "
                                             r"parameters' float32"):
        layer.bprop(nnx.asarray(np.ones((1, 2)), device="strict:device1", dtype="float64"))


def test_boolean_labels_and_unsigned_labels():
    z = x_of((2, 3))
    with pytest.raises(nnx.DTypeError, match=r"targets are booleans; give integer labels"):
        nnx.SoftmaxCrossEntropy().fprop(z, nnx.asarray(np.array([True, False])))
    value = nnx.SoftmaxCrossEntropy().fprop(z, nnx.asarray(np.array([0, 2], dtype=np.uint8)))
    assert float(value) == pytest.approx(np.log(3), rel=1e-6)


def test_prelu_and_asarray_arguments():
    with pytest.raises(nnx.ArgumentError, match=r"PReLU: num_parameters must be a positive "
                                                r"integer, got 0"):
        nnx.PReLU(0)
    with pytest.raises(TypeError, match=r"asarray: expected numbers, a nested list or an "
                                        r"array, got NoneType"):
        nnx.asarray(None)


def test_a_users_class_never_stands_in_for_nnx_s_own():
    class Tanh(nnx.Module):                       # same name as nnx.Tanh
        pass
    from nnx.module import registry
    assert registry["Tanh"] is nnx.Tanh
    assert Tanh().architecture()["type"].endswith("test_errors.test_a_users_class_never_"
                                                  "stands_in_for_nnx_s_own.<locals>.Tanh")


def test_one_module_in_two_places_is_refused():
    layer = nnx.Linear(3, 3)
    with pytest.raises(ValueError, match=r"Sequential: Linear\(3, 3\) appears twice \(at 0 and "
                                         r"2\)"):
        nnx.Sequential(layer, nnx.Tanh(), layer)
    with pytest.raises(ValueError, match=r"appears twice \(at 0.0 and 1\)"):
        nnx.Sequential(nnx.Sequential(layer), layer)


@pytest.mark.parametrize("make, message", [
    (lambda: nnx.Linear(2.5, 3), r"Linear: n_in must be a positive integer, got 2.5"),
    (lambda: nnx.Adam(nnx.Linear(2, 2), betas=(0.9,)), r"betas must be a pair \(beta1, beta2\)"),
    (lambda: nnx.Adam(nnx.Linear(2, 2), eps=-1), r"eps must be a positive finite number"),
    (lambda: nnx.SGD(nnx.Linear(2, 2), momentum="0.9"), r"momentum must be a number"),
])
def test_more_bad_constructor_arguments(make, message):
    with pytest.raises(nnx.ArgumentError, match=message):
        make()


def test_multi_input_modules_name_both_devices():
    a = nnx.asarray(np.ones((2, 3)), device="strict")
    b = nnx.asarray(np.ones((2, 3)), device="strict:device1")
    with pytest.raises(nnx.DeviceError, match=r"Add\(\).fprop: input 2 is on strict:device1 "
                                              r"but input 1 is on strict"):
        nnx.Add().fprop(a, b)
