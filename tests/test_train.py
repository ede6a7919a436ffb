"""The training loop: generated data (always runs), real MNIST (when the folder exists)."""

import numpy as np
import pytest

import nnx
from nnx import datasets, models, train


def blobs(n, seed, classes=4, dim=12):
    """Gaussian clusters around fixed centres: an easy, always-available data set."""
    centres = np.random.default_rng(123).standard_normal((classes, dim)) * 2
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    return (centres[labels] + rng.standard_normal((n, dim))).astype(np.float32), labels


def run(device_epochs=5, lr=0.2, seed=0, save=None):
    nnx.seed(seed)
    (x, t), (xt, tt) = blobs(600, 1), blobs(300, 2)
    net = models.mlp(12, 4, [16], "tanh")
    opt = nnx.SGD(net, lr=lr, momentum=0.5)
    x, t = train.to_device(x, t)
    xt, tt = train.to_device(xt, tt)
    return net, nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, x, t, epochs=device_epochs,
                        batch_size=50, x_test=xt, t_test=tt, on_epoch=save)


def test_fit_learns_generated_data(device):
    _, history = run()
    assert len(history) == 5
    assert history[-1].train_loss < 0.5 * history[0].train_loss
    assert history[-1].test_errors < 0.08 * 300          # Bayes error here is ~3%
    assert history[-1].train_accuracy > 0.9
    assert all(h.test_total == 300 and h.seconds > 0 for h in history)


def test_same_seed_same_result(device):
    _, a = run(device_epochs=2)
    _, b = run(device_epochs=2)
    assert [h.train_loss for h in a] == [h.train_loss for h in b]
    assert [h.test_errors for h in a] == [h.test_errors for h in b]
    _, c = run(device_epochs=2, seed=1)
    assert [h.train_loss for h in a] != [h.train_loss for h in c]


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning",
                            "ignore:invalid value:RuntimeWarning")
def test_divergence_names_epoch_and_step_and_keeps_the_last_checkpoint(tmp_path):
    path = tmp_path / "model.npz"
    saved = []

    def save(stats):
        saved.append(stats.epoch)
        nnx.save(net_holder[0], path, epoch=stats.epoch)

    nnx.seed(0)
    x, t = blobs(600, 1)
    net = models.mlp(12, 4, [16], "relu")
    net_holder = [net]
    opt = nnx.SGD(net, lr=0.1)
    x, t = train.to_device(x, t)
    nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, x, t, epochs=1, batch_size=50, on_epoch=save)
    good = [nnx.to_numpy(p).copy() for p in net.params()]
    with pytest.raises(nnx.TrainingDiverged, match=r"the loss became (nan|inf) at epoch 1, step "
                                                   r"\d+ of 12: lower the learning rate"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), opt, x, t, epochs=3, batch_size=50,
                lr_schedule=lambda e: 1e30, on_epoch=save)
    assert saved == [1]
    for p, g in zip(nnx.load(path).params(), good):
        np.testing.assert_array_equal(nnx.to_numpy(p), g)


def test_labels_are_checked_once_before_training():
    x, t = train.to_device(*blobs(100, 1))
    net = models.mlp(12, 3, [], "tanh")                 # 3 outputs, labels up to 3
    with pytest.raises(nnx.LabelError, match=r"training labels must lie in \[0, 3\) for a "
                                             r"network with 3 outputs, got values from 0 to 3"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net), x, t, epochs=1)


def test_evaluate_counts_errors():
    net = nnx.Sequential(nnx.Linear(2, 2))
    net.set_params([nnx.asarray(np.eye(2)), nnx.asarray(np.zeros(2))])
    x = nnx.asarray(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]]))
    t = nnx.asarray(np.array([0, 1, 1, 1]))
    assert nnx.evaluate(net, x, t, batch_size=3) == 1


@pytest.mark.parametrize("name, expected", [
    ("constant", [0.1, 0.1, 0.1, 0.1]), ("step", [0.1, 0.1, 0.01, 0.001]),
    ("cosine", [0.1, 0.1 * (1 + np.cos(np.pi / 4)) / 2, 0.05, 0.1 * (1 + np.cos(3 * np.pi / 4)) / 2]),
])
def test_schedules(name, expected):
    s = train.schedule(name, 0.1, 4)
    np.testing.assert_allclose([s(e) for e in range(1, 5)], expected)


@pytest.mark.mnist
def test_mlp_on_real_mnist(mnist_dir):
    data = datasets.load_mnist(mnist_dir)
    nnx.seed(0)
    net = models.mlp(784, 10, [200], "tanh")
    x, t = train.to_device(data.x_train, data.y_train)
    xt, tt = train.to_device(data.x_test, data.y_test)
    history = nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net, lr=0.1, momentum=0.9),
                      x, t, epochs=1, batch_size=100, x_test=xt, t_test=tt)
    assert history[-1].test_total == 10000
    assert history[-1].test_errors < 500      # one epoch with momentum: about 300 here


def test_fit_restores_the_loss_label_check_and_module_modes():
    x, t = train.to_device(*blobs(100, 1))
    net = nnx.Sequential(nnx.Linear(12, 8), nnx.Dropout(0.5), nnx.Linear(8, 4))
    net[1].eval()                                        # the user's choice, kept by evaluate
    loss = nnx.SoftmaxCrossEntropy()
    nnx.evaluate(net, x, t)
    assert net.training and not net[1].training
    nnx.fit(net, loss, nnx.SGD(net), x, t, epochs=1, batch_size=50)
    with pytest.raises(nnx.LabelError):
        loss.fprop(nnx.asarray(np.zeros((2, 4))), nnx.asarray(np.array([0, -1])))


@pytest.mark.parametrize("make_t, message", [
    (lambda t: t[:-1], r"fit: 100 inputs but 99 labels"),
    (lambda t: np.eye(4)[t][:, :, None], r"fit: SoftmaxCrossEntropy\(\) needs integer class "
                                         r"labels of shape \(N,\) or one-hot rows of shape "
                                         r"\(N, classes\), got float32 of shape \(100, 4, 1\)"),
])
def test_fit_checks_the_data(make_t, message):
    x, t = blobs(100, 1)
    net = models.mlp(12, 4, [], "tanh")
    with pytest.raises(nnx.ShapeError, match=message):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(net), nnx.asarray(x),
                nnx.asarray(make_t(t)), epochs=1)


def test_fit_refuses_an_optimiser_of_another_network():
    x, t = train.to_device(*blobs(100, 1))
    net, other = models.mlp(12, 4, [], "tanh"), models.mlp(12, 4, [], "tanh")
    with pytest.raises(ValueError, match=r"the optimiser is bound to another module"):
        nnx.fit(net, nnx.SoftmaxCrossEntropy(), nnx.SGD(other), x, t, epochs=1)
