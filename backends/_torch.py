from .base import Backend


class TorchBackend(Backend):
    """PyTorch tensors through array-api-compat (``torch:cpu``, ``torch:cuda:N``)."""

    name, module, prefixes = "torch", "torch", ("torch",)

    def namespace(self):
        import array_api_compat.torch
        return array_api_compat.torch

    def parse(self, prefix, rest):
        import torch
        rest = rest or "cpu"
        if rest == "cuda":
            rest = "cuda:0"
        dev = torch.device(rest)
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise ValueError("torch was built without CUDA or sees no GPU")
            if dev.index >= torch.cuda.device_count():
                raise ValueError(f"torch sees {torch.cuda.device_count()} GPU(s)")
        elif dev.type != "cpu":
            raise ValueError("nnx supports torch:cpu and torch:cuda:N")
        return self.spec_of(dev), dev

    def listed(self):
        import torch
        return ["torch:cpu"] + [f"torch:cuda:{i}" for i in range(torch.cuda.device_count())]

    def from_host(self, host_array, native):
        import torch
        return torch.from_numpy(host_array.copy()).to(native)

    def to_host(self, x):
        return x.detach().cpu().numpy()

    def native_device(self, x):
        return x.device

    def spec_of(self, native):
        return "torch:cpu" if native.type == "cpu" else f"torch:cuda:{native.index or 0}"

    def synchronize(self, native):
        import torch
        if native.type == "cuda":
            torch.cuda.synchronize(native)
