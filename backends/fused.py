"""One-kernel forms of a pair of Array API operations, where a library has one.

A layer written against the Array API spends one kernel launch per operation; where the
arrays are torch tensors (CPU or CUDA), a few pairs have a single torch kernel that
computes the same values:

- ``multiply_add(a, b, c)``: a·b + c (torch.addcmul, one elementwise pass);
- ``add_scaled(a, b, alpha)``: a + alpha·b for a Python float alpha (torch.add with
  alpha, one elementwise pass);
- ``select(mask, a)``: a where the boolean mask holds, else 0 (torch multiplies by the
  mask: one kernel, 3 to 5 times faster than torch.where on the CPU; a NaN or inf in ``a``
  gives NaN, not 0, where the mask is off);
- ``inverse_sqrt(x)``: 1/√x (torch.rsqrt, one kernel for ``x ** -0.5``, which the CPU
  compiler turns into a libm pow call per vector of every elementwise pass it is fused
  into; rsqrt becomes a square-root instruction);
- ``sign(x)``: torch.sign, one kernel where array-api-compat's adds two to make NaN give
  NaN (torch's gives 0 for NaN);
- ``max_argmax(x, axis)``: the maximum along ``axis`` and the position of its first
  occurrence, both with the axis kept (torch.max with a dim: one reduction);
- ``matmul_add(a, b, c)``: a @ b + c for 2-D a, b and c broadcast over the rows of the
  product (torch.addmm: the sum in the matmul's own pass);
- ``take_sum(x, index, offsets)``: rows of a 2-D ``x`` gathered at ``index`` and summed k by k
  (torch.nn.functional.embedding_bag: one pass, without the k times larger gathered array;
  6 to 8 times faster than index_select and sum on the CPU);
- ``max_first_mask(x, axis, scratch)``: on torch CPU tensors, the maximum along ``axis``
  and a float mask of its first occurrence, in five simple passes (torch's CPU reduction
  that returns positions is 4 times slower than all five);
- ``sgd_step(params, grads, velocities, lr, momentum, weight_decay)``: SGD's whole update
  of a list of parameters in torch's multi-tensor kernels (1 to 4 launches in all).

Each returns None for other libraries; the caller then issues the two operations itself.
"""


def _torch(*arrays):
    return all(type(a).__module__.startswith("torch") for a in arrays)


def multiply_add(a, b, c):
    """a·b + c (broadcast), in one torch kernel; None elsewhere."""
    if _torch(a, b, c):
        import torch
        return torch.addcmul(c, a, b)
    return None


def add_scaled(a, b, alpha):
    """a + alpha·b (broadcast; alpha a Python float), in one torch kernel; None elsewhere."""
    if _torch(a, b):
        import torch
        return torch.add(a, b, alpha=alpha)
    return None


def select(mask, a):
    """``a`` where ``mask`` (bool, broadcast) holds, else 0, as a torch product; None
    elsewhere (the caller uses where(mask, a, 0))."""
    if _torch(mask, a):
        return a * mask
    return None


def inverse_sqrt(x):
    """1/√x, in one torch kernel; None elsewhere (the caller uses x ** -0.5)."""
    if _torch(x):
        import torch
        return torch.rsqrt(x)
    return None


def sign(x):
    """torch.sign of a real torch tensor (0 for NaN); None elsewhere."""
    if _torch(x):
        import torch
        return torch.sign(x)
    return None


def max_argmax(x, axis):
    """(max, argmax) of torch ``x`` along ``axis`` with that axis kept, in one torch
    reduction (the first maximum's position on ties, as argmax); None elsewhere."""
    if _torch(x):
        import torch
        values, indices = torch.max(x, dim=axis, keepdim=True)
        return values, indices
    return None


def matmul_add(a, b, c):
    """a @ b + c (2-D a and b; c broadcast to the product's shape) in one torch kernel;
    None elsewhere."""
    if _torch(a, b, c) and a.ndim == 2 and b.ndim == 2:
        import torch
        return torch.addmm(c, a, b)
    return None


def take_sum(x, index, offsets):
    """sum over j < k of x[index[r·k + j], :], for each r: (len(index) // k, x.shape[1]),
    from a 2-D torch ``x``, a 1-D non-negative ``index`` and ``offsets`` = (0, k, 2k, ...)
    (the caller's cached arange), in one torch kernel; None elsewhere (the caller takes
    along axis 0, reshapes to (R, k, N) and sums axis 1)."""
    if not _torch(x, index, offsets) or x.ndim != 2 or x.requires_grad \
            or not x.is_floating_point() or x.numel() == 0:     # (torch fails on no columns)
        return None
    import torch
    if offsets.dtype != index.dtype:
        offsets = offsets.to(index.dtype)
    return torch.nn.functional.embedding_bag(index, x, offsets, mode="sum")


def max_first_mask(x, axis, scratch):
    """(max, mask) of a torch CPU tensor ``x`` along ``axis`` (kept): mask is 1.0 at the
    first maximum of each slice and 0.0 elsewhere, in x's dtype, written into ``scratch``'s
    reused array "mask" (the caller's next call overwrites it).  The first maximum is found
    by weighting the places equal to the maximum by k, k−1, ..., 1 and keeping the largest
    weight.  A slice holding NaN has a NaN maximum and a mask of all ones there (its values
    and gradients are NaN anyway).  None elsewhere (CUDA: ``max_argmax``, one kernel)."""
    if not _torch(x) or x.device.type != "cpu" or not x.is_floating_point() or x.requires_grad:
        return None
    from .gather import torch_tracing
    if torch_tracing():                 # no reused array inside a traced program
        return None
    import torch
    k = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = k
    ranks = scratch.array(("ranks", k, axis, x.ndim), lambda: torch.arange(
        k, 0, -1, dtype=x.dtype, device=x.device).reshape(shape), x)
    top = torch.amax(x, dim=axis, keepdim=True)
    mask = scratch.empty("mask", x.shape, x)
    torch.eq(x, top, out=mask)
    mask.mul_(ranks)
    torch.eq(mask, torch.amax(mask, dim=axis, keepdim=True), out=mask)
    return top, mask


def sgd_step(params, grads, velocities, lr, momentum, weight_decay):
    """SGD's update of every parameter at once, in torch's multi-tensor kernels (a handful
    of launches for the whole list, and no concatenation of the gradients):
    g ← g + λ·p;  v ← μ·v + g (v = g at the first step);  p ← p − lr·v.  ``velocities``
    is the list of v (None entries before the first step; kept as they are when μ = 0, as
    the other updates and torch.optim.SGD keep them).  Returns the new list of v, or None
    where this does not apply (not torch, mixed devices or dtypes, a learning rate that is
    not a number): the caller updates then."""
    if not params or not isinstance(lr, (int, float)) or not _torch(*params, *grads):
        return None
    first = params[0]
    if any(a.device != first.device or a.dtype != first.dtype for a in (*params, *grads)):
        return None
    import torch
    if weight_decay:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    if not momentum:
        torch._foreach_add_(params, grads, alpha=-lr)
        return list(velocities)
    if all(v is None for v in velocities):
        velocities = [g.clone(memory_format=torch.contiguous_format)   # (g: overwritten by
                      for g in grads]           # the next bprop; a conv's is transposed)
    elif any(v is None or not _torch(v) or v.device != first.device or v.dtype != first.dtype
             for v in velocities):
        return None
    else:
        torch._foreach_mul_(velocities, momentum)
        torch._foreach_add_(velocities, grads)
    torch._foreach_add_(params, velocities, alpha=-lr)
    return list(velocities)
