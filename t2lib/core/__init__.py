"""The method: base models, the SVD of their target matrices, experts (z vectors as files, mixing),
SVF on a live model (W' = U diag(σ ⊙ scale) Vᵀ), and the statistics of singular values."""
