"""The sequential-MNIST transformer of ``nnx train --model transformer``
(nnx.models.transformer with the CLI's sizes), beside PyTorch eager with the same
architecture and weights: rows read as 28 steps of 28 pixels, Linear to d_model, a learned
positional table, pre-LN blocks (nn.MultiheadAttention, GELU tanh form), mean over the
steps, Linear to 10."""

import numpy as np

from nnx import backends, models
import nnx

from .cases import nnx_net_case, torch_net_case

T, F, D_MODEL, HEADS, D_FF, BLOCKS = 28, 28, 64, 4, 256, 2      # nnx train's defaults


def matmul_flops(batch, train=True):
    """FLOPs of the step's matmuls: the input Linear, per block the fused QKV, Q·Kᵀ, P·V,
    the output projection and the two feed-forward Linears, the head; training: x·W, xᵀ·g
    and g·Wᵀ for each (the first Linear's g·Wᵀ skipped), and the four attention matmuls of
    the backward pass for the two of the forward."""
    rows = batch * T
    linears = [(F, D_MODEL)] + [(D_MODEL, 3 * D_MODEL), (D_MODEL, D_MODEL),
                                (D_MODEL, D_FF), (D_FF, D_MODEL)] * BLOCKS
    total = sum(2 * rows * a * b * (3 if train else 1) for a, b in linears)
    total -= 2 * rows * F * D_MODEL if train else 0
    attention = 2 * 2 * batch * T * T * D_MODEL * BLOCKS        # Q·Kᵀ and P·V
    total += attention * (3 if train else 1)
    return total + 2 * batch * D_MODEL * 10 * (3 if train else 1)


def build_net(dtype, device):
    nnx.seed(0)
    return models.transformer(10, T, F, D_MODEL, HEADS, D_FF, BLOCKS).to(device, dtype)


def nnx_case(spec, data, dtype):
    device = backends.resolve(spec)
    return nnx_net_case(build_net(dtype, device), device, data, dtype)


def torch_model(ours):
    """A torch.nn.Module computing what ``ours`` (models.transformer) computes, with its
    weights (float64 here; torch_net_case casts it)."""
    import torch

    def tensor(a, transpose=False):
        a = nnx.to_numpy(a)
        return torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(a.T if transpose else a)
                                                   .astype("float64")))

    def linear(m):
        lin = torch.nn.Linear(m.n_in, m.n_out, dtype=torch.float64)
        lin.weight, lin.bias = tensor(m.W, True), tensor(m.b)
        return lin

    def norm(m):
        ln = torch.nn.LayerNorm(m.features, eps=m.eps, dtype=torch.float64)
        ln.weight, ln.bias = tensor(m.gamma), tensor(m.beta)
        return ln

    class Block(torch.nn.Module):
        def __init__(self, block):
            super().__init__()
            (ln1, mha), (ln2, fc1, _, fc2) = block.blocks[0].body, block.blocks[1].body
            self.ln1, self.ln2, self.fc1, self.fc2 = norm(ln1), norm(ln2), linear(fc1), linear(fc2)
            self.mha = torch.nn.MultiheadAttention(mha.d_model, mha.heads, batch_first=True,
                                                   dtype=torch.float64)
            self.mha.in_proj_weight, self.mha.in_proj_bias = tensor(mha.W_qkv, True), \
                tensor(mha.b_qkv)
            self.mha.out_proj.weight, self.mha.out_proj.bias = tensor(mha.W_out, True), \
                tensor(mha.b_out)
            self.gelu = torch.nn.GELU(approximate="tanh")

        def forward(self, x):
            a = self.ln1(x)
            h = x + self.mha(a, a, a, need_weights=False)[0]
            return h + self.fc2(self.gelu(self.fc1(self.ln2(h))))

    class Transformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            reshape, embed, table, *blocks, final, _, head = ours
            self.shape = reshape.shape
            self.embed, self.table = linear(embed), tensor(table.P)
            self.blocks = torch.nn.Sequential(*[Block(b) for b in blocks])
            self.final, self.head = norm(final), linear(head)

        def forward(self, x):
            h = self.embed(x.reshape((x.shape[0],) + self.shape))
            h = self.blocks(h + self.table[:h.shape[1]])
            return self.head(self.final(h).mean(dim=1))

    return Transformer()


def torch_case(data, dtype, device="cpu"):
    """PyTorch eager: the same architecture (nn.MultiheadAttention, nn.LayerNorm, ...) with
    nnx's initial weights."""
    return torch_net_case(torch_model(build_net("float64", "cpu")), data, dtype, device)
