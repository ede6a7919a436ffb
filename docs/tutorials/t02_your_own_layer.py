"""
Your own layer, derived and proven
==================================

A layer in nnx is two methods written by hand: :meth:`nnx.Module.fprop` computes the
output and keeps what the backward pass needs, :meth:`nnx.Module.bprop` turns the
gradient of the loss with respect to the output into the gradient with respect to the
input (and stores the gradients of the parameters).  Nothing checks the calculus for
you at run time, so you prove it once: :func:`nnx.gradcheck` compares bprop with finite
differences of fprop, and :func:`nnx.testing.check_module` runs that and six more
checks on every backend installed here.  This tutorial derives a layer, proves it,
breaks it on purpose to show what a failure says, and keeps the proof as a pytest test
with the ``nnx_device`` fixture.
"""

# %%
# The layer: Swish with a trainable slope
# ---------------------------------------
#
# Swish multiplies its input by a sigmoid of it, with a parameter :math:`\beta`
# that training adjusts:
#
# .. math::
#
#    y = x\,\sigma(\beta x), \qquad \sigma(a) = \frac{1}{1 + e^{-a}}.
#
# Write :math:`s = \sigma(\beta x)` and :math:`g = \partial L / \partial y`.  Since
# :math:`\sigma'(a) = \sigma(a)(1 - \sigma(a))`, the product rule gives
#
# .. math::
#
#    \frac{\partial L}{\partial x} = g\,\bigl(s + \beta x\, s (1 - s)\bigr),
#    \qquad
#    \frac{\partial L}{\partial \beta} = \sum g\, x^2 s (1 - s),
#
# the sum running over every element (one :math:`\beta` is shared by all of them).
#
# In code: ``param_names`` lists the parameters, ``init_params`` creates them on the
# current device (with a zero gradient ``dbeta`` beside ``beta``).  fprop checks the
# input's device and dtype against the parameters (``check_array``) and records the
# output's shape; bprop starts with ``check_grad``, which refuses a bprop before any
# fprop and a gradient of the wrong shape.  The sigmoid is computed as
# :math:`\tfrac12 \tanh(a/2) + \tfrac12`, which never overflows.  Only the Array API
# namespace ``xp`` of the input is used, so the layer runs on every backend.

import numpy as np

import nnx
from nnx.testing import check_module


class Swish(nnx.Module):
    """y = x·σ(βx);   dx = g·(s + βx·s(1 - s)),  dβ = Σ g·x²·s(1 - s),  s = σ(βx)"""

    param_names = ("beta",)

    def __init__(self, beta=1.0):
        self.init_params(None, None, beta=np.full((1,), beta))

    def fprop(self, x):
        xp = self.check_array(x)
        self.x = x
        self.s = 0.5 * xp.tanh(0.5 * self.beta * x) + 0.5
        self.out_shape = tuple(x.shape)
        return x * self.s

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g, x, s = grad_output, self.x, self.s
        ds = s * (1.0 - s)
        self.dbeta = xp.reshape(xp.sum(g * x * x * ds), (1,))
        return g * (s + self.beta * x * ds) if need_input_grad else None


layer = Swish(beta=1.5)
x = nnx.asarray(np.linspace(-3, 3, 12).reshape(3, 4))
print(layer.fprop(x))

# %%
# Finite differences: ``gradcheck``
# ---------------------------------
#
# :func:`nnx.gradcheck` builds the Jacobian twice: its columns from central
# differences of fprop, :math:`(f(x + h e_i) - f(x - h e_i)) / 2h`, and its rows from
# bprop of unit vectors, for the input and for every parameter, in float64.  The
# result says what it compared and the worst disagreement.

print(nnx.gradcheck(Swish(beta=1.5), x))

# %%
# Every backend: ``check_module``
# -------------------------------
#
# :func:`nnx.testing.check_module` takes a factory (here the class itself) and an
# input shape.  It builds the module once on ``cpu``, copies it to every device nnx
# can use here, and on each device and dtype checks that fprop leaves its input
# alone and bprop its ``grad_output``, that the dtype is kept, gradcheck, that the
# results agree with NumPy's, that bprop before fprop is refused, and that an input on
# another device is refused.  Devices that are not installed are listed as skipped, with the reason.

report = check_module(Swish, input_shape=(4, 5))
print(report)

# %%
# A wrong layer, and what the failure says
# ----------------------------------------
#
# The most common mistake in a hand-written bprop is a forgotten term.  Here the
# product rule is dropped: the input gradient is written as if :math:`s` did not
# depend on :math:`x`.  The parameter's gradient is still right.


class WrongSwish(Swish):
    """Swish whose bprop forgets the product rule: dx = g·s (missing g·βx·s(1 - s))."""

    def bprop(self, grad_output, *, need_input_grad=True):
        xp = self.check_grad(grad_output)
        g, x, s = grad_output, self.x, self.s
        self.dbeta = xp.reshape(xp.sum(g * x * x * s * (1.0 - s)), (1,))
        return g * s


import textwrap

try:
    nnx.gradcheck(WrongSwish(beta=1.5), x)
except nnx.GradcheckError as e:          # one line; wrapped here to fit the page
    print(textwrap.fill(f"GradcheckError: {e}", 88, subsequent_indent="    "))

# %%
# The error names the worst entry, bprop's value and the finite difference's: an
# entry of :math:`\partial y / \partial x` is wrong (bprop even has the wrong sign
# there), while the entries for ``beta`` pass.  ``check_module`` raises :class:`nnx.testing.ModuleCheckError`
# (an ``AssertionError``, so pytest reports it as a failed test), listing every
# device, dtype and check that failed; everything else still passes.

try:
    check_module(WrongSwish, input_shape=(4, 5), devices=["cpu", "strict"])
except nnx.testing.ModuleCheckError as e:
    for line in str(e).splitlines():     # wrapped to fit the page
        print(textwrap.fill(line, 88, subsequent_indent="      "))

# %%
# Seen on a picture: Swish acts elementwise, so with :math:`g = 1` bprop returns the
# derivative :math:`dy/dx` at every point of a grid, and a central difference of
# fprop gives the same curve numerically.  The right bprop lies on it; the wrong one
# is :math:`\sigma(\beta x)` alone, which misses the bump the product rule adds.

import matplotlib.pyplot as plt

grid = nnx.asarray(np.linspace(-5, 5, 201).reshape(1, -1))   # float32, the default dtype
h = 1e-2                      # float32 keeps ~7 digits: a smaller step would mostly be noise
numeric = (nnx.to_numpy(Swish(1.5).fprop(grid + h)) - nnx.to_numpy(Swish(1.5).fprop(grid - h))) / (2 * h)
curves = {}
for name, cls in (("bprop of Swish", Swish), ("bprop of WrongSwish", WrongSwish)):
    layer = cls(1.5)
    layer.fprop(grid)
    curves[name] = nnx.to_numpy(layer.bprop(nnx.asarray(np.ones((1, 201)))))

xs = nnx.to_numpy(grid)[0]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(xs, numeric[0], color="0.7", lw=6, label="finite difference of fprop")
ax.plot(xs, curves["bprop of Swish"][0], "C0", label="bprop of Swish")
ax.plot(xs, curves["bprop of WrongSwish"][0], "C3--", label="bprop of WrongSwish")
ax.set(xlabel="x", ylabel="dy/dx", title="Swish, beta = 1.5: the derivative three ways")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
plt.show()

# %%
# Keeping the proof: a pytest test with ``nnx_device``
# ----------------------------------------------------
#
# Installing nnx installs a pytest plugin with an ``nnx_device`` fixture: a test that
# takes it runs once per device, with that device selected and ``nnx.seed(0)``
# applied, and devices missing here are skipped with their reason (``pytest -rs``
# prints them).  A test of the layer is then one line for the proof and a few for the
# properties you care about.  We write such a file and run pytest on it.

import pathlib
import subprocess
import sys
import tempfile

test_file = textwrap.dedent('''
    import numpy as np
    import nnx
    from nnx.testing import check_module
    from swish import Swish


    def test_swish_is_proven():
        check_module(Swish, input_shape=(4, 5))        # raises on any failure


    def test_swish_is_x_over_2_at_beta_0(nnx_device):
        x = nnx.asarray(np.linspace(-2, 2, 10).reshape(2, 5))
        y = Swish(beta=0.0).fprop(x)                   # σ(0) = 1/2
        assert np.allclose(nnx.to_numpy(y), nnx.to_numpy(x) / 2)
''')

with tempfile.TemporaryDirectory() as folder:
    folder = pathlib.Path(folder)
    # the layer's module: the two definitions above, as a user keeps them in a file
    (folder / "swish.py").write_text(
        "import numpy as np\nimport nnx\n\n\n" + textwrap.dedent('''
        class Swish(nnx.Module):
            param_names = ("beta",)

            def __init__(self, beta=1.0):
                self.init_params(None, None, beta=np.full((1,), beta))

            def fprop(self, x):
                xp = self.check_array(x)
                self.x = x
                self.s = 0.5 * xp.tanh(0.5 * self.beta * x) + 0.5
                self.out_shape = tuple(x.shape)
                return x * self.s

            def bprop(self, grad_output, *, need_input_grad=True):
                xp = self.check_grad(grad_output)
                g, x, s = grad_output, self.x, self.s
                ds = s * (1.0 - s)
                self.dbeta = xp.reshape(xp.sum(g * x * x * ds), (1,))
                return g * (s + self.beta * x * ds) if need_input_grad else None
        '''))
    (folder / "test_swish.py").write_text(test_file)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                          "test_swish.py"], cwd=folder, capture_output=True, text=True)
    print(run.stdout)

# %%
# The student's recipe, then: write fprop and bprop with the formulas in the
# docstring; run ``check_module`` until it reports ``0 failed`` everywhere (float64
# first, whose tolerances are tight; float32 then shows whether the formula is
# numerically sound); keep it as a test.  :doc:`../guide/testing` describes each
# check, :doc:`../guide/gradcheck` how gradcheck chooses its entries.
