"""Evaluation at scale: during training (held-out losses, sample grids, bits/dim at snapshots,
TensorBoard), over a whole data set (bits/dim), sample quality (FID / IS / KID) and sampling in
shards. Every driver splits its work plainly over the ranks of a job (no DDP around a sampler or
an adaptive ODE solver) and appends its per-batch results to a file, so it resumes where it
stopped, with any number of ranks."""
