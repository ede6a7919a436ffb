"""Graphs, multi-input modules, elementwise blocks, the RBF network and nnx.summary."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import nnx

DTYPES = ["float64", "float32"]
N, D = 4, 5


def arr(host, dtype="float64"):
    return nnx.asarray(np.asarray(host, dtype="float64"), dtype=dtype)


def rand(shape, seed=1, low=None, high=None):
    rng = np.random.default_rng(seed)
    return rng.uniform(low, high, shape) if low is not None else rng.standard_normal(shape)


def j_graph():
    """J = cos(sin(x²) + 3x²), with x² used twice (fan-out)."""
    g = nnx.Graph("x")
    g.add("sq", nnx.Square(), "x").add("s", nnx.Sin(), "sq").add("t", nnx.Scale(3), "sq")
    g.add("u", nnx.Add(), "s", "t").add("J", nnx.Cos(), "u")
    return g.outputs("J")


def residual_mlp(n_in=D, hidden=6, n_out=3):
    g = nnx.Graph("x")
    g.add("h", nnx.Linear(n_in, hidden), "x").add("a", nnx.Tanh(), "h")
    g.add("r", nnx.Linear(hidden, hidden), "a").add("ra", nnx.Tanh(), "r")
    g.add("sum", nnx.Add(), "a", "ra").add("out", nnx.Linear(hidden, n_out), "sum")
    return g.outputs("out")


def two_in_two_out():
    """(x, z) -> (Linear(x)·tanh(z), concat(x, z) split again): several inputs and outputs."""
    return nnx.Graph(["x", "z"], [
        ("lx", nnx.Linear(D, 3), "x"),
        ("tz", nnx.Tanh(), "z"),
        ("m", nnx.Multiply(), ["lx", "tz"]),
        ("c", nnx.Concat(), ["x", "m"]),
        ("parts", nnx.Split([2, D + 1]), "c"),
        ("e", nnx.Exp(), "parts:1"),
    ], outputs=["m", "e"])


def nested_graph():
    inner = residual_mlp(D, 4, D)
    g = nnx.Graph("x")
    g.add("block", inner, "x").add("act", nnx.Sin(), "block")
    g.add("mix", nnx.Multiply(), "act", "x").add("seq", nnx.Sequential(
        nnx.Linear(D, 4), nnx.Residual(nnx.Sequential(nnx.Linear(4, 4), nnx.Tanh()))), "mix")
    return g.outputs("seq")


# name: (module factory, input shapes, (low, high) for uniform inputs or None for normal)
CASES = {
    "Square": (nnx.Square, [(N, D)], None),
    "Exp": (nnx.Exp, [(N, D)], None),
    "Log": (nnx.Log, [(N, D)], (0.5, 2.0)),
    "Sin": (nnx.Sin, [(N, D)], None),
    "Cos": (nnx.Cos, [(N, D)], None),
    "Scale": (lambda: nnx.Scale(-2.5), [(N, D)], None),
    "Add-2": (nnx.Add, [(N, D)] * 2, None),
    "Add-3": (nnx.Add, [(N, D)] * 3, None),
    "Multiply-2": (nnx.Multiply, [(N, D)] * 2, None),
    "Multiply-3": (nnx.Multiply, [(N, D)] * 3, None),
    "Concat": (nnx.Concat, [(N, 2), (N, 3), (N, 1)], None),
    "Split": (lambda: nnx.Split([2, 3]), [(N, D)], None),
    "Add-broadcast": (nnx.Add, [(N, 3, D), (3, 1), (D,)], None),
    "Multiply-broadcast": (nnx.Multiply, [(N, 1, D), (3, 1), (1, 3, D)], None),
    "Concat-axis1": (lambda: nnx.Concat(axis=1), [(N, 2, 3), (N, 1, 3)], None),
    "Split-axis1": (lambda: nnx.Split([1, 2], axis=1), [(N, 3, 2)], None),
    "Residual": (lambda: nnx.Residual(nnx.Sequential(nnx.Linear(D, D), nnx.Tanh())),
                 [(N, D)], None),
    "SquaredDistance": (lambda: nnx.SquaredDistance(D, 3), [(N, D)], None),
    "Gaussian": (lambda: nnx.Gaussian(D, width=0.7), [(N, D)], (0.0, 2.0)),
    "WeightedSum": (lambda: nnx.WeightedSum(D), [(N, D)], None),
    "RBF-1d": (lambda: nnx.RBFNetwork(1, 6, centre_range=(-2, 2)), [(N, 1)], None),
    "RBF-5d": (lambda: nnx.RBFNetwork(D, 6), [(N, D)], None),
    "J-graph": (j_graph, [(N, 1)], None),
    "residual-MLP": (residual_mlp, [(N, D)], None),
    "nested-graph": (nested_graph, [(N, D)], None),
    "Graph-in-Sequential": (lambda: nnx.Sequential(residual_mlp(D, 4, 3), nnx.Tanh()),
                            [(N, D)], None),
    "two-in-two-out": (two_in_two_out, [(N, D), (N, 3)], None),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CASES)
def test_gradients(device, name, dtype):
    make, shapes, bounds = CASES[name]
    lo, hi = bounds or (None, None)
    xs = tuple(arr(rand(s, seed=i + 1, low=lo, high=hi), dtype) for i, s in enumerate(shapes))
    result = nnx.gradcheck(make(), xs[0] if len(xs) == 1 else xs, dtype=dtype)
    assert result.ok and result.checked > 0, result
    direction = nnx.gradcheck(make(), xs[0] if len(xs) == 1 else xs, dtype=dtype,
                              mode="direction")
    assert direction.ok, direction


def test_j_graph_matches_the_closed_form(device):
    x_host = np.linspace(-2.0, 2.0, 9)[:, None]
    g = j_graph()
    y = g.fprop(arr(x_host))
    dx = nnx.to_numpy(g.bprop(arr(np.ones_like(x_host))))
    u = np.sin(x_host ** 2) + 3 * x_host ** 2
    np.testing.assert_allclose(nnx.to_numpy(y), np.cos(u), rtol=1e-12)
    np.testing.assert_allclose(dx, -np.sin(u) * (np.cos(x_host ** 2) * 2 * x_host + 6 * x_host),
                               rtol=1e-10, atol=1e-12)


def test_fan_out_adds_the_gradients(device):
    lin = nnx.Linear(D, 3, dtype="float64")
    g = nnx.Graph("x").add("h", lin, "x").add("twice", nnx.Add(), "h", "h").outputs("twice")
    x, go = arr(rand((N, D))), arr(rand((N, 3), seed=2))
    y = g.fprop(x)
    dx = nnx.to_numpy(g.bprop(go))
    W, gh = nnx.to_numpy(lin.W), nnx.to_numpy(go)
    np.testing.assert_allclose(nnx.to_numpy(y), 2 * (nnx.to_numpy(x) @ W), rtol=1e-12)
    np.testing.assert_allclose(dx, 2 * gh @ W.T, rtol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(lin.dW), 2 * nnx.to_numpy(x).T @ gh, rtol=1e-12)
    # a graph input used by two nodes: y = x + x² -> dx = g·(1 + 2x)
    g2 = nnx.Graph("x").add("sq", nnx.Square(), "x").add("y", nnx.Add(), "x", "sq").outputs("y")
    g2.fprop(x)
    np.testing.assert_allclose(nnx.to_numpy(g2.bprop(arr(np.ones((N, D))))),
                               1 + 2 * nnx.to_numpy(x), rtol=1e-12)


def test_several_inputs_and_outputs():
    g = two_in_two_out().to(dtype="float64")
    x, z = arr(rand((N, D))), arr(rand((N, 3), seed=2))
    m, e = g.fprop(x, z)
    assert tuple(m.shape) == (N, 3) and tuple(e.shape) == (N, D + 1)
    gx, gz = g.bprop((arr(np.ones((N, 3))), None))       # None: output 'e' gets no gradient
    lx = nnx.to_numpy(g.nodes["lx"].module.fprop(x))
    np.testing.assert_allclose(nnx.to_numpy(gz), lx * (1 - np.tanh(nnx.to_numpy(z)) ** 2),
                               rtol=1e-12)
    assert tuple(gx.shape) == (N, D)
    assert g.bprop((None, None), need_input_grad=False) is None
    with pytest.raises(nnx.ShapeError, match="has 2 outputs.*pass a tuple of 2 grads"):
        g.bprop(arr(np.ones((N, 3))))
    with pytest.raises(nnx.ShapeError, match="output 'e' has shape \\(4, 3\\)"):
        g.bprop((None, arr(np.ones((N, 3)))))


class Spy(nnx.Linear):
    def bprop(self, grad_output, *, need_input_grad=True):
        self.asked = need_input_grad
        return super().bprop(grad_output, need_input_grad=need_input_grad)


class SpySquare(nnx.Square):
    calls = 0

    def bprop(self, grad_output, *, need_input_grad=True):
        self.calls += 1
        return super().bprop(grad_output, need_input_grad=need_input_grad)


def test_need_input_grad_false_skips_the_input_side():
    first, side = Spy(D, D, dtype="float64"), SpySquare()
    g = nnx.Graph("x").add("h", first, "x").add("sq", side, "x")
    g.add("y", nnx.Multiply(), "h", "sq").outputs("y")
    g.fprop(arr(rand((N, D))))
    assert g.bprop(arr(np.ones((N, D))), need_input_grad=False) is None
    assert first.asked is False and side.calls == 0     # x² has no parameters behind it
    assert tuple(g.bprop(arr(np.ones((N, D)))).shape) == (N, D)
    assert first.asked is True and side.calls == 1


def test_graph_is_a_module_through_children(device):
    net = nnx.Sequential(nested_graph(), nnx.Dropout(0.5)).to(dtype="float64")
    names = [n for n, _ in net.named_params()]
    assert names[:2] == ["0.block.h.W", "0.block.h.b"] and names[-2:] == \
        ["0.seq.1.body.0.W", "0.seq.1.body.0.b"]
    assert len(net.params()) == len(net.grads()) == len(names) == 10
    x = arr(rand((N, D)))
    net.eval()
    assert not net[0].nodes["block"].module.nodes["h"].module.training
    y1 = nnx.to_numpy(net.fprop(x))
    net.set_params([p * 0.0 for p in net.params()])
    assert np.all(nnx.to_numpy(net.fprop(x)) == 0.0)
    net.to(dtype="float32")
    assert all(str(p.dtype).endswith("float32") for p in net.params())
    assert y1.shape == (N, 4)


def test_rebuild_from_config():
    g = residual_mlp().to(dtype="float64")
    again = nnx.Graph.from_config(g.config(), g.children())
    x = arr(rand((N, D)))
    np.testing.assert_array_equal(nnx.to_numpy(again.fprop(x)), nnx.to_numpy(g.fprop(x)))
    assert g.architecture()["args"]["wiring"][4] == ["sum", ["a", "ra"]]
    assert "(sum <- a, ra): Add()" in repr(g) and g["h"] is g.children()[0]


# -- malformed graphs: each error names the node ----------------------------------------
def test_cycle_is_named():
    with pytest.raises(ValueError, match="Graph has a cycle: a -> b -> a"):
        nnx.Graph("x", [("a", nnx.Tanh(), "b"), ("b", nnx.Add(), ["a", "x"])], outputs="b")


def test_unknown_node_is_named_with_a_suggestion():
    g = nnx.Graph("x").add("hidden", nnx.Tanh(), "x").add("out", nnx.Sin(), "hiden")
    with pytest.raises(ValueError, match="node 'out': unknown input 'hiden' \\(did you mean "
                                         "'hidden'\\?\\)"):
        g.outputs("out")
    with pytest.raises(ValueError, match="Graph.outputs: unknown input 'nope'"):
        nnx.Graph("x").add("a", nnx.Tanh(), "x").outputs("nope")


def test_unused_input_and_dead_node():
    with pytest.raises(ValueError, match="Graph input 'x2' is not used"):
        nnx.Graph(["x", "x2"], [("a", nnx.Tanh(), "x")], outputs="a")
    with pytest.raises(ValueError, match="Graph node 'dead' leads to no output"):
        nnx.Graph("x", [("a", nnx.Tanh(), "x"), ("dead", nnx.Sin(), "x")], outputs="a")


def test_shape_mismatch_at_first_run_names_the_node(device):
    g = nnx.Graph("x").add("h", nnx.Linear(D, 3, dtype="float64"), "x")
    g.add("out", nnx.Add(), "h", "x")
    g.outputs("out")
    with pytest.raises(nnx.ShapeError, match="Graph node 'out' \\(Add on input shapes "
                                             "\\(4, 3\\), \\(4, 5\\), fprop\\).*no broadcasting"):
        g.fprop(arr(rand((N, D))))
    g2 = nnx.Graph("x").add("h", nnx.Linear(3, 2, dtype="float64"), "x").outputs("h")
    with pytest.raises(nnx.ShapeError, match="Graph node 'h'.*expected \\(batch, 3\\)"):
        g2.fprop(arr(rand((N, D))))


def test_bprop_before_fprop():
    with pytest.raises(nnx.StateError, match="Graph.bprop called before fprop"):
        residual_mlp().bprop(arr(np.ones((N, 3)), "float32"))
    with pytest.raises(nnx.StateError, match="Split.*bprop called before fprop"):
        nnx.Split([1, 1]).bprop((None, None))


def test_other_wiring_mistakes():
    with pytest.raises(ValueError, match="node 'y': Tanh takes 1 input\\(s\\), but 2 were"):
        nnx.Graph("x", [("a", nnx.Sin(), "x"), ("y", nnx.Tanh(), ["a", "x"])], outputs="y")
    with pytest.raises(ValueError, match="node 'y': Add takes 2 or more"):
        nnx.Graph("x", [("y", nnx.Add(), "x")], outputs="y")
    with pytest.raises(ValueError, match="'s' has 2 outputs; pick one as 's:0'"):
        nnx.Graph("x", [("s", nnx.Split([2, 3]), "x"), ("y", nnx.Sin(), "s")], outputs="y")
    with pytest.raises(ValueError, match="'s:2' names output 2 of 's', which has 2"):
        nnx.Graph("x", [("s", nnx.Split([2, 3]), "x"), ("y", nnx.Sin(), "s:2")], outputs="y")
    shared = nnx.Tanh()
    with pytest.raises(ValueError, match=r"Tanh\(\) appears twice \(at node 'a' and node 'b'\)"):
        nnx.Graph("x").add("a", shared, "x").add("b", shared, "a")
    with pytest.raises(ValueError, match="name 'a' is already taken"):
        nnx.Graph("x").add("a", nnx.Tanh(), "x").add("a", nnx.Sin(), "x")
    with pytest.raises(ValueError, match="without '.'"):
        nnx.Graph("x").add("a.b", nnx.Tanh(), "x")
    with pytest.raises(nnx.StateError, match="no outputs"):
        nnx.Graph("x").add("a", nnx.Tanh(), "x").fprop(arr(np.ones((1, 1))))
    with pytest.raises(ValueError, match="got 1 array\\(s\\) for the inputs \\(x, z\\)"):
        two_in_two_out().fprop(arr(rand((N, D))))
    with pytest.raises(nnx.ShapeError, match="Residual: Linear\\(5, 3\\) maps"):
        nnx.Residual(nnx.Linear(D, 3)).fprop(arr(rand((N, D)), "float32"))
    with pytest.raises(nnx.ShapeError, match="expected a last axis of 5 = 2 \\+ 3"):
        nnx.Split([2, 3]).fprop(arr(rand((N, 4))))
    with pytest.raises(nnx.DTypeError, match="different dtypes \\(float64, float32\\)"):
        nnx.Add().fprop(arr(rand((N, D))), arr(rand((N, D)), "float32"))


# -- gradcheck with several inputs or outputs can fail --------------------------------
class BrokenMultiply(nnx.Multiply):
    def bprop(self, grad_output, *, need_input_grad=True):
        g1, g2 = super().bprop(grad_output)
        return g1, g2 * 1.01


class BrokenSplit(nnx.Split):
    def bprop(self, grad_output, *, need_input_grad=True):
        return super().bprop((grad_output[0], grad_output[1] * 1.01))


def test_gradcheck_catches_wrong_multi_input_and_output_grads():
    x, z = arr(rand((N, D))), arr(rand((N, D), seed=2))
    with pytest.raises(nnx.GradcheckError, match="d y\\[.*\\] / d x1\\["):
        nnx.gradcheck(BrokenMultiply(), (x, z))
    with pytest.raises(nnx.GradcheckError, match="d y1\\[.*\\] / d x\\["):
        nnx.gradcheck(BrokenSplit([2, 3]), x)
    assert not nnx.gradcheck(BrokenSplit([2, 3]), x, mode="direction",
                             raise_on_failure=False).ok


# -- summary and the RBF fit ------------------------------------------------------------
def test_summary_counts():
    net = nnx.Sequential(nnx.Linear(784, 200), nnx.Tanh(),
                         nnx.Residual(nnx.Sequential(nnx.Linear(200, 200), nnx.Tanh())),
                         nnx.Linear(200, 10))
    text = nnx.summary(net, input_shape=(1, 784))
    assert "Total params: 199,210" in text      # 784·200+200 + 200·200+200 + 200·10+10
    assert "Linear(784, 200)" in text and "157,000" in text and "40,200" in text
    assert text.splitlines()[2].split()[-3:] == ["(1,", "10)", "199,210"]
    g = nnx.Graph("x")                          # the same network as a graph
    g.add("h", nnx.Linear(784, 200), "x").add("a", nnx.Tanh(), "h")
    g.add("r", nnx.Linear(200, 200), "a").add("ra", nnx.Tanh(), "r")
    g.add("sum", nnx.Add(), "a", "ra").add("out", nnx.Linear(200, 10), "sum").outputs("out")
    assert "Total params: 199,210" in nnx.summary(g, input_shape=(1, 784))
    g = two_in_two_out()
    text = nnx.summary(g, input_shape=[(2, D), (2, 3)])
    assert "Inputs" in text and "parts:1" in text and "(2, 2), (2, 6)" in text
    assert f"Total params: {D * 3 + 3:,}" in text
    assert "Output shape" in nnx.summary(nnx.RBFNetwork(1, 7)) and \
        "Total params: 21 " in nnx.summary(nnx.RBFNetwork(1, 7))


def test_summary_leaves_the_module_alone():
    net = nnx.Sequential(nnx.Linear(3, 2), nnx.Dropout(0.5))
    before = [nnx.to_numpy(p).copy() for p in net.params()]
    nnx.summary(net, input_shape=(1, 3))
    assert net.training and net[1].training and getattr(net[0], "x", None) is None
    assert all(np.array_equal(a, nnx.to_numpy(b)) for a, b in zip(before, net.params()))


def test_rbf_learns_a_sine():
    nnx.seed(0)
    xs = np.linspace(-3, 3, 60)[:, None]
    x, t = arr(xs, "float32"), arr(np.sin(xs), "float32")
    net, loss = nnx.RBFNetwork(1, 10, centre_range=(-3, 3), dtype="float32"), nnx.MSE()
    opt = nnx.Adam(net, lr=0.02)
    first = float(loss.fprop(net.fprop(x), t))
    for _ in range(300):
        loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
    assert float(loss.fprop(net.fprop(x), t)) < 0.01 * first


def test_rbf_example_script_runs():
    script = pathlib.Path(__file__).resolve().parent.parent / "examples" / "rbf_regression.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "300"], text=True,
                         capture_output=True, check=True, timeout=60).stdout
    assert "Total params: 36" in out
    assert float(out.split("final loss ")[1].split()[0]) < 1e-3


def test_checkpoint_round_trip(tmp_path):
    checkpoint = pytest.importorskip("nnx.checkpoint")
    x = arr(rand((N, D)), "float32")
    split = nnx.Graph("x", [("s", nnx.Split([2, 3]), "x"), ("a", nnx.Scale(2), "s:0"),
                            ("b", nnx.Exp(), "s:1"), ("c", nnx.Concat(), ["a", "b"])], "c")
    for net in (nested_graph(), nnx.Sequential(nnx.Linear(D, D), nnx.RBFNetwork(D, 4)), split,
                nnx.Residual(nnx.Tanh())):
        checkpoint.save(net, tmp_path / "net.npz")
        again = checkpoint.load(tmp_path / "net.npz")
        np.testing.assert_array_equal(nnx.to_numpy(again.fprop(x)), nnx.to_numpy(net.fprop(x)))
        assert repr(again) == repr(net)
