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


SOLVE_BLOCK = 65536
"""Entities whose systems :meth:`SideRatings.solve` builds and solves at once: about 300 MB at
rank 16, and enough systems to keep a GPU busy."""


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

    def rows(self, start: int, stop: int) -> SideRatings:
        """Entities ``start:stop`` of this side alone, sharing this one's arrays."""
        first, last = int(self.crow[start]), int(self.crow[stop])
        crow = self.crow[start : stop + 1] - first
        cols = self.cols[first:last]
        shape = (stop - start, self.shape[1])
        return SideRatings(
            shape=shape,
            order=self.order[first:last],
            crow=crow,
            cols=cols,
            values=self.values[first:last],
            count=self.count[start:stop],
            pattern=_csr(crow, cols, self.pattern.values()[first:last], shape),
        )

    def normal_equations(
        self, other: torch.Tensor, products: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-entity ``G = sum x x^T`` and ``h = sum (r - b) x`` over each entity's ratings, where
        the other side's parameters ``other = [q, b]`` give the design row ``x = [q, 1]``;
        ``products`` is :func:`lower_products` of that design where the caller has it already.

        Returns ``G`` as ``[n_this, d, d]`` with ``d = rank + 1`` and only its lower triangle
        filled (all that :func:`ridge_solve` reads), and ``h`` as ``[n_this, d]``.
        """
        d = other.shape[1]
        design = design_rows(other)
        lower = self.pattern @ (lower_products(design) if products is None else products)
        gram = torch.zeros(len(lower), d, d, dtype=design.dtype, device=design.device)
        start = 0
        for j in range(d):
            gram[:, j, : j + 1] = lower[:, start : start + j + 1]
            start += j + 1
        # The other side's bias moves every sweep: subtract it from the ratings.
        bias = other[:, -1].contiguous()
        target = _csr(self.crow, self.cols, self.values - bias[self.cols], self.shape)
        return gram, target @ design

    def solve(
        self, other: torch.Tensor, reg: torch.Tensor, block: int = SOLVE_BLOCK
    ) -> torch.Tensor:
        """``ridge_solve(*self.normal_equations(other), reg)`` (``reg`` one value per entity),
        ``block`` entities at a time: the same values, without the systems of every entity in
        memory at once (at 10^6 entities and rank 16 they and their factors are gigabytes).
        Where some system cannot be factored, every entity is solved at once by least squares."""
        products = lower_products(design_rows(other))
        spans = [(a, min(a + block, self.shape[0])) for a in range(0, self.shape[0], block)]

        def system(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
            return ridge_system(*self.rows(a, b).normal_equations(other, products), reg[a:b])

        solved = []
        for a, b in spans:
            part = by_cholesky(*system(a, b))
            if part is None:
                # Some entity's system cannot be factored (no ratings and no ridge): least squares
                # for the whole batch at once, as ridge_solve gives it; batched least squares
                # rounds differently in batches of other sizes. Only a zero ridge floor gets here.
                return ridge_solve(*self.normal_equations(other, products), reg)
            solved.append(part)
        return torch.cat(solved) if solved else other.new_zeros(0, other.shape[1])


def design_rows(other: torch.Tensor) -> torch.Tensor:
    """The design rows ``x = [q, 1]`` of the other side's parameters ``[q, b]``."""
    design = other.clone()
    design[:, -1] = 1.0
    return design


def lower_products(design: torch.Tensor) -> torch.Tensor:
    """Each design row's ``x x^T``, its lower triangle only, row by row: it halves the bytes the
    sparse product moves, which bound its speed once the other side no longer fits in the
    cache."""
    d = design.shape[1]
    return torch.cat([design[:, j : j + 1] * design[:, : j + 1] for j in range(d)], 1)


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
    system, rhs = ridge_system(gram, rhs, reg, prior)
    solved = by_cholesky(system, rhs)
    return by_least_squares(system, rhs) if solved is None else solved


def ridge_system(
    gram: torch.Tensor,
    rhs: torch.Tensor,
    reg: float | torch.Tensor,
    prior: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The systems ``G + reg I`` (lower triangles) and right-hand sides of :func:`ridge_solve`."""
    reg = torch.as_tensor(reg, dtype=gram.dtype, device=gram.device).reshape(-1, 1)
    if prior is not None:
        rhs = rhs + reg * prior
    system = gram.reshape(-1, *gram.shape[-2:]).clone()
    system.diagonal(dim1=-2, dim2=-1).add_(reg)
    return system, rhs


def by_cholesky(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor | None:
    """The solutions by Cholesky factorisation; None when any system cannot be factored."""
    factor, info = torch.linalg.cholesky_ex(system)
    if bool((info != 0).any()):
        return None
    return torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)


def by_least_squares(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    full = system.tril() + system.tril(-1).transpose(-1, -2)
    full = full.expand(*rhs.shape[:-1], -1, -1)
    return torch.linalg.lstsq(full, rhs.unsqueeze(-1)).solution.squeeze(-1)


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
