"""Sparse building blocks of alternating least squares: normal equations, batched ridge solves, a
truncated SVD for the starting point, and a scope for the torch thread count.

For the entities on one side (say users), the ridge system of entity ``u`` needs
``G_u = sum_i x_i x_i^T`` and ``h_u = sum_i t_ui x_i`` over the items ``i`` it rated, where
``x_i`` is the other side's design row. Stacking every item's flattened outer product ``x_i x_i^T``
as one row of a dense matrix turns all the ``G_u`` into one sparse-dense product: the user x item
pattern matrix times that ``[n_items, d*d]`` matrix. The cost is linear in the number of ratings,
no per-rating outer product is ever materialised, and the product is one library call (MKL on CPU,
cuSPARSE on CUDA).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch


def _csr(
    crow: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():
        # torch flags every CSR construction as a beta feature; the layout is built here from
        # sorted indices, so the invariant checks are skipped too.
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support.*")
        return torch.sparse_csr_tensor(
            crow, cols, values, shape, dtype=values.dtype, check_invariants=False
        )


def index_dtype(*sizes: int) -> torch.dtype:
    """32-bit indices where every position fits in them, else 64-bit: the index arrays are most
    of the bytes kept per rating (at 10^8 ratings each 64-bit one is 0.8 GB), and on the CPU the
    sparse products give the same sums with either (tests/test_mf.py)."""
    return torch.int32 if max(sizes) < 2**31 else torch.int64


@dataclass(frozen=True)
class SideRatings:
    """The ratings grouped by the entities of one side: a CSR row per entity of this side, a
    column per entity of the other side."""

    shape: tuple[int, int]
    order: torch.Tensor
    """Position in the caller's rating arrays of each stored entry, in CSR order."""
    crow: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    """The ratings in CSR order."""
    count: torch.Tensor
    """Ratings per entity of this side, in the ratings' dtype."""
    pattern: torch.Tensor
    """CSR matrix of ones where a rating exists."""

    @classmethod
    def build(
        cls,
        this: torch.Tensor,
        other: torch.Tensor,
        rating: torch.Tensor,
        n_this: int,
        n_other: int,
    ) -> SideRatings:
        index = index_dtype(len(this), n_this, n_other)
        key = this.long() * n_other + other.long()
        if bool((key[1:] >= key[:-1]).all()):  # already grouped (files are often sorted by user)
            order = torch.arange(len(key), dtype=index, device=key.device)
        else:
            order = torch.argsort(key).to(index)
        del key
        counts = torch.bincount(this, minlength=n_this)
        crow = torch.zeros(n_this + 1, dtype=index, device=this.device)
        crow[1:] = torch.cumsum(counts, 0)
        cols = other[order].to(index)
        values = rating[order]
        shape = (n_this, n_other)
        return cls(
            shape=shape,
            order=order,
            crow=crow,
            cols=cols,
            values=values,
            count=counts.to(rating.dtype),
            pattern=_csr(crow, cols, torch.ones_like(values), shape),
        )

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix of per-rating ``values`` given in the caller's order."""
        return _csr(self.crow, self.cols, values[self.order], self.shape)

    def normal_equations(self, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-entity ``G = sum x x^T`` and ``h = sum (r - b) x`` over each entity's ratings, where
        the other side's parameters ``other = [q, b]`` give the design row ``x = [q, 1]``.

        Returns ``G`` as ``[n_this, d, d]`` with ``d = rank + 1`` and only its lower triangle
        filled (all that :func:`ridge_solve` reads), and ``h`` as ``[n_this, d]``.
        """
        d = other.shape[1]
        design = other.clone()
        design[:, -1] = 1.0
        # Only the lower triangle of each x x^T: it halves the bytes the sparse product moves,
        # which bound its speed once the other side no longer fits in the cache.
        lower = self.pattern @ torch.cat(
            [design[:, j : j + 1] * design[:, : j + 1] for j in range(d)], 1
        )
        gram = torch.zeros(len(lower), d, d, dtype=design.dtype, device=design.device)
        start = 0
        for j in range(d):
            gram[:, j, : j + 1] = lower[:, start : start + j + 1]
            start += j + 1
        # The other side's bias moves every sweep: subtract it from the ratings.
        bias = other[:, -1].contiguous()
        target = _csr(self.crow, self.cols, self.values - bias[self.cols], self.shape)
        return gram, target @ design


def ridge_solve(
    gram: torch.Tensor,
    rhs: torch.Tensor,
    reg: float | torch.Tensor,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve ``(G + reg I) x = rhs + reg prior`` for a batch of small symmetric systems (``reg``
    may be one value per system; one ``G`` may serve every right-hand side). Only the lower
    triangle of ``G`` is read.

    The systems are positive definite whenever ``reg > 0``, so a Cholesky factorisation does;
    when any cannot be factored (``reg = 0`` on an entity without data) the batch falls back to
    least squares.
    """
    reg = torch.as_tensor(reg, dtype=gram.dtype, device=gram.device).reshape(-1, 1)
    if prior is not None:
        rhs = rhs + reg * prior
    system = gram.reshape(-1, *gram.shape[-2:]).clone()
    system.diagonal(dim1=-2, dim2=-1).add_(reg)
    factor, info = torch.linalg.cholesky_ex(system)
    if bool((info != 0).any()):
        system = system.tril() + system.tril(-1).transpose(-1, -2)
        system = system.expand(*rhs.shape[:-1], -1, -1)
        return torch.linalg.lstsq(system, rhs.unsqueeze(-1)).solution.squeeze(-1)
    return torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)


def truncated_svd(
    matrix: torch.Tensor,
    transposed: torch.Tensor,
    rank: int,
    generator: torch.Generator,
    *,
    oversample: int = 8,
    power_iterations: int = 8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The leading ``rank`` singular triplets ``(U, S, V)`` of a sparse matrix by randomised range
    finding with power iterations (Halko, Martinsson and Tropp, 2011); ``transposed`` is the same
    matrix transposed. A matrix with fewer rows or columns than ``rank`` gets zero triplets to
    make up the count.

    The random test matrix is drawn on the CPU in float64 from ``generator``, so the result does
    not depend on the device.
    """
    n_rows, n_cols = matrix.shape
    width = min(rank + oversample, n_rows, n_cols)
    probe = torch.randn(n_cols, width, generator=generator, dtype=torch.float64)
    probe = probe.to(matrix.device, matrix.values().dtype)
    basis = torch.linalg.qr(matrix @ probe).Q
    for _ in range(power_iterations):
        basis = torch.linalg.qr(transposed @ basis).Q
        basis = torch.linalg.qr(matrix @ basis).Q
    # The small matrix basis^T A, computed as (A^T basis)^T.
    small_u, singular, small_vt = torch.linalg.svd((transposed @ basis).T, full_matrices=False)
    left, right = basis @ small_u[:, :rank], small_vt[:rank].T
    singular = singular[:rank]
    missing = rank - len(singular)
    if missing > 0:  # a matrix smaller than the rank: the extra directions are zero
        left = torch.nn.functional.pad(left, (0, missing))
        right = torch.nn.functional.pad(right, (0, missing))
        singular = torch.nn.functional.pad(singular, (0, missing))
    return left, singular, right


@contextmanager
def torch_threads(count: int) -> Iterator[int]:
    """Run the block with ``count`` torch intra-op threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    if count != previous:
        torch.set_num_threads(count)
    try:
        yield count
    finally:
        if count != previous:
            torch.set_num_threads(previous)
