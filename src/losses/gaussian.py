"""Closed-form divergences between multivariate Gaussians (kexue.fm/archives/8512).

For N1 = N(mu1, S1) and N2 = N(mu2, S2) in d dimensions, with S1, S2 symmetric positive definite:

KL divergence
    KL(N1 || N2) = 1/2 [ tr(S2^-1 S1) + (mu2 - mu1)^T S2^-1 (mu2 - mu1) - d
                         + log det S2 - log det S1 ]
Bhattacharyya distance, D_B = -log ∫ sqrt(p1(x) p2(x)) dx, with S = (S1 + S2) / 2
    D_B = 1/8 (mu1 - mu2)^T S^-1 (mu1 - mu2) + 1/2 log( det S / sqrt(det S1 det S2) )
Squared 2-Wasserstein distance
    W2^2 = |mu1 - mu2|^2 + tr( S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2 )
Diagonal covariances given as log-variances (the VAE's fast path), summed over the last dim:
    KL = 1/2 sum( logvar2 - logvar1 + (exp(logvar1) + (mu1 - mu2)^2) / exp(logvar2) - 1 )

Every function broadcasts over leading batch dimensions: means are (..., d), covariances
(..., d, d), and the result has the broadcast batch shape (...). Inverses and determinants go
through Cholesky factors S = L L^T: S^-1 b = L^-T L^-1 b, tr(S2^-1 S1) = ||L2^-1 L1||_F^2 and
log det S = 2 sum log diag(L). Everything is computed in the input dtype.

For W2 the trace of the matrix square root only needs the eigenvalues of S2^1/2 S1 S2^1/2,
which are those of S1 S2 and hence of the symmetric matrix L2^T S1 L2 (similar to S2 S1 via
L2). So the trace is sum sqrt(eigvalsh(L2^T S1 L2)), tiny negative eigenvalues clamped to 0:
one symmetric eigen-solve and no eigenvectors, which keeps the gradient finite when
eigenvalues repeat (e.g. S2 = I), where differentiating an eigenvector-based S2^1/2 gives NaN.
"""

from __future__ import annotations

import torch


def _logdet_from_cholesky(chol: torch.Tensor) -> torch.Tensor:
    """log det S from the Cholesky factor L of S: 2 sum log diag(L)."""
    return 2.0 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _mahalanobis_sq(diff: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """diff^T S^-1 diff = |L^-1 diff|^2 for S = L L^T; diff (..., d), chol (..., d, d)."""
    white = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False)
    return white.squeeze(-1).pow(2).sum(-1)


def gaussian_kl(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu1, cov1) || N(mu2, cov2)) for means (..., d) and SPD covariances (..., d, d)."""
    chol1 = torch.linalg.cholesky(cov1)
    chol2 = torch.linalg.cholesky(cov2)
    trace = torch.linalg.solve_triangular(chol2, chol1, upper=False).pow(2).sum((-2, -1))
    mahalanobis = _mahalanobis_sq(mu2 - mu1, chol2)
    logdet_ratio = _logdet_from_cholesky(chol2) - _logdet_from_cholesky(chol1)
    return 0.5 * (trace + mahalanobis - mu1.shape[-1] + logdet_ratio)


def gaussian_bhattacharyya(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """Bhattacharyya distance -log ∫ sqrt(p1 p2) between N(mu1, cov1) and N(mu2, cov2)."""
    chol = torch.linalg.cholesky(0.5 * (cov1 + cov2))
    logdet1 = _logdet_from_cholesky(torch.linalg.cholesky(cov1))
    logdet2 = _logdet_from_cholesky(torch.linalg.cholesky(cov2))
    mahalanobis = _mahalanobis_sq(mu1 - mu2, chol)
    return mahalanobis / 8.0 + 0.5 * (_logdet_from_cholesky(chol) - 0.5 * (logdet1 + logdet2))


def _trace_sqrt_product(cov1: torch.Tensor, cov2: torch.Tensor) -> torch.Tensor:
    """tr (S2^1/2 S1 S2^1/2)^1/2 = sum sqrt(eig(L2^T S1 L2)), S2 = L2 L2^T."""
    chol2 = torch.linalg.cholesky(cov2)
    inner = chol2.mT @ cov1 @ chol2
    inner = 0.5 * (inner + inner.mT)  # exact symmetry for the eigen-solver
    return torch.linalg.eigvalsh(inner).clamp_min(0.0).sqrt().sum(-1)


def gaussian_w2(
    mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor
) -> torch.Tensor:
    """SQUARED 2-Wasserstein distance W2^2 between N(mu1, cov1) and N(mu2, cov2).

    W2^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2); take .sqrt() for W2 itself.
    """
    mean_term = (mu1 - mu2).pow(2).sum(-1)
    traces = cov1.diagonal(dim1=-2, dim2=-1).sum(-1) + cov2.diagonal(dim1=-2, dim2=-1).sum(-1)
    return mean_term + traces - 2.0 * _trace_sqrt_product(cov1, cov2)


def gaussian_kl_diagonal(
    mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu1, diag e^logvar1) || N(mu2, diag e^logvar2)), summed over the last dimension."""
    ratio = (logvar1 - logvar2).exp() + (mu1 - mu2).pow(2) * (-logvar2).exp()
    return 0.5 * (logvar2 - logvar1 + ratio - 1.0).sum(-1)
