"""`--device cuda` gives the same grads as the CPU: the tutorial's examples and the calculus flags.

    python benchmarks/gpu_check.py      # prints a table; exits 1 if any figure differs

Run it on a machine with a CUDA GPU (CI has none; on a CPU-only machine it says so and exits 0).
"""

from __future__ import annotations

import sys
import time

import torch

from torchgrad_magic import grad

CASES = [
    ("y = 3 * x ** 2", "x=3", {}),
    ("y = 6 * x ** 2 + 2 * x + 4", "x=3", {"order": 3}),
    ("f = u**3 + v**2 + 4*u*v", "u=3 v=4", {"hessian": True}),
    ("Y = x ** 2", "x=torch.linspace(-20, 20, 20)", {"jacobian": True}),
    ("y = torch.sin(x) * torch.exp(x)", "x=torch.linspace(-3, 3, 1_000_000)", {}),
    ("y = torch.tanh(x) * x", "x=0.5", {"check": True, "plot": True}),
]


def compare(cell: str, wrt: str, extra: dict) -> tuple[float, float, float]:
    cpu = grad(cell, wrt=wrt, dtype="float64", **extra)
    start = time.perf_counter()
    gpu = grad(cell, wrt=wrt, dtype="float64", device="cuda", **extra)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    error = max((cpu.grads[n] - gpu.grads[n].cpu()).abs().max().item() for n in cpu.grads)
    for name, found in cpu.orders.items():
        for a, b in zip(found, gpu.orders[name], strict=True):
            error = max(error, (a - b.cpu()).abs().max().item())
    for a, b in zip(cpu.matrices, gpu.matrices, strict=True):
        error = max(error, (a.values - b.values.cpu()).abs().max().item())
    if cpu.checks:
        assert all(c.ok for c in gpu.checks), gpu.checks
    scale = max(g.abs().max().item() for g in cpu.grads.values())
    return error, scale, seconds


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing to compare (run this on a machine with a GPU)")
        return 0
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| cell | --wrt | flags | max abs difference CPU vs CUDA | largest grad | CUDA time |")
    print("|---|---|---|---|---|---|")
    worst = 0.0
    for cell, wrt, extra in CASES:
        error, scale, seconds = compare(cell, wrt, extra)
        worst = max(worst, error / max(1.0, scale))
        flags = " ".join(f"--{k}" if v is True else f"--{k} {v}" for k, v in extra.items()) or "—"
        print(f"| `{cell}` | `{wrt}` | {flags} | {error:.2e} | {scale:.3g} | {seconds * 1e3:.1f} ms |")
    print(f"\nworst relative difference: {worst:.2e} ({'same' if worst < 1e-9 else 'DIFFERENT'})")
    return 0 if worst < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
