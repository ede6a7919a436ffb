"""Fit y = sin(x) on [-3, 3] with an RBF network (a cascade of three modules) and the MSE loss.

    .venv/bin/python examples/rbf_regression.py [--device torch:cpu] [--steps 2000]

y = Σ_k u_k·exp(-β_k·(x - w_k)²): centres w, widths β and weights u all train by bprop.
"""

import argparse
import math
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))   # run from anywhere
import nnx  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, torch:cpu, strict, cuda, ...")
    parser.add_argument("--centres", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()

    nnx.seed(0)
    try:
        nnx.set_device(args.device)
    except nnx.NNXError as e:              # e.g. torch:cpu where torch is not installed
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    n = 200
    xs = [-3.0 + 6.0 * i / (n - 1) for i in range(n)]
    x = nnx.asarray([[v] for v in xs])
    t = nnx.asarray([[math.sin(v)] for v in xs])

    net = nnx.RBFNetwork(1, args.centres, width=1.0, centre_range=(-3.0, 3.0))
    loss = nnx.MSE()
    opt = nnx.Adam(net, lr=args.lr)
    print(nnx.summary(net, input_shape=(n, 1)))
    for step in range(1, args.steps + 1):
        value = loss.fprop(net.fprop(x), t)
        net.bprop(loss.bprop(), need_input_grad=False)
        opt.step()
        if step == 1 or step % (args.steps // 4 or 1) == 0:
            print(f"step {step:5d}  loss {float(value):.3e}")
    final = float(loss.fprop(net.fprop(x), t))
    print(f"final loss {final:.3e}  (MSE = 0.5·mean squared error on {n} points, "
          f"device {args.device})")


if __name__ == "__main__":
    main()
