"""Metrics: full-ranking and sampled ranking evaluation, CTR AUC / UAUC / log-loss."""
