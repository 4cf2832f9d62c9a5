"""Accuracy of the QR min-norm solver against the textbook inverse formula as the condition number grows.

    python benchmarks/conditioning.py      # writes benchmarks/results/conditioning.md

A (30, 60) system with singular values log-spaced from 1 to 1/kappa and a right-hand side in the row space, so
the min-norm solution is known exactly; relative error of each method, float64.
"""

from __future__ import annotations

from pathlib import Path

import torch

from adaptlab.inner.lstsq import min_norm_lstsq, textbook_min_norm


def errors(kappa: float, seed: int = 4) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64, generator=g))
    V, _ = torch.linalg.qr(torch.randn(60, 30, dtype=torch.float64, generator=g))
    s = torch.logspace(0, -torch.log10(torch.tensor(kappa)).item(), 30, dtype=torch.float64)
    A = U @ torch.diag(s) @ V.T
    beta = V @ torch.randn(30, dtype=torch.float64, generator=g)
    y = A @ beta
    rel = lambda b: float((b - beta).norm() / beta.norm())  # noqa: E731
    return rel(min_norm_lstsq(A, y)), rel(textbook_min_norm(A, y))


def main() -> None:
    rows = ["| condition number | QR min-norm (relative error) | textbook A^T (A A^T)^-1 y |", "|---|---|---|"]
    for k in (1e2, 1e4, 1e6, 1e7, 1e8, 1e10):
        ours, text = errors(k)
        rows.append(f"| {k:.0e} | {ours:.1e} | {text:.1e} |")
    out = Path(__file__).resolve().parent / "results" / "conditioning.md"
    out.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
