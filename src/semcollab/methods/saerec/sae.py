"""Sparse autoencoders over item text embeddings (the dictionary of SAERec's intents).

* ``kind="topk"`` (Gao et al., 2024): z = TopK_k(ReLU(W_enc (x - b_dec) + b_enc)); exactly k latents
  fire per item, so sparsity needs no L1 tuning. Dead latents are revived by the AuxK loss: the
  ``aux_k`` most active *dead* latents must reconstruct what the live ones missed.
* ``kind="relu"``: z = ReLU(...) trained with MSE + ``l1`` x sum(z x ||decoder column||), for comparison.

Decoder columns are kept at unit norm so a latent's activation is its magnitude along a direction;
``tied=True`` uses W_dec = W_enc^T."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import at_least, one_of, positive
from ...runs.files import write_dir_atomic


@dataclass
class SAEConfig:
    kind: str = one_of("topk", "topk", "relu")
    expansion: int = at_least(16, 1)  # latents = expansion x input dim
    k: int = at_least(15, 1)
    tied: bool = False
    l1: float = at_least(1e-3, 0, integer=False)  # relu only
    aux_k: int = at_least(64, 0)  # dead latents used by the AuxK loss (topk only)
    aux_coef: float = at_least(1 / 32, 0, integer=False)
    dead_after: int = at_least(200, 1)  # steps without firing after which a latent counts as dead (for AuxK)
    steps: int = at_least(2000, 1)  # optimiser steps (not epochs: item tables range from 1k to 20k rows)
    batch_size: int = at_least(256, 1)
    lr: float = positive(1e-3)
    seed: int = at_least(0, 0)


class SparseAutoencoder(nn.Module):
    def __init__(self, d_in: int, cfg: SAEConfig):
        super().__init__()
        if cfg.kind not in ("topk", "relu"):
            raise ValueError(f"SAE kind must be topk or relu, got {cfg.kind!r}")
        self.cfg, self.d_in, self.n_latents = cfg, d_in, cfg.expansion * d_in
        g = torch.Generator().manual_seed(cfg.seed)
        w = torch.randn(self.n_latents, d_in, generator=g)
        w = F.normalize(w, dim=1)
        self.W_enc = nn.Parameter(w.clone())
        self.b_enc = nn.Parameter(torch.zeros(self.n_latents))
        self.W_dec = None if cfg.tied else nn.Parameter(w.T.clone())  # (d_in, n_latents), unit columns
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_buffer("steps_since_fired", torch.zeros(self.n_latents, dtype=torch.long))

    def decoder(self) -> torch.Tensor:
        """(d_in, n_latents) decoder with unit-norm columns: column j is latent j's direction."""
        w = self.W_enc.T if self.W_dec is None else self.W_dec
        return F.normalize(w, dim=0)

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu((x - self.b_dec) @ self.W_enc.T + self.b_enc)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.pre_activation(x)
        if self.cfg.kind == "relu":
            return pre
        top = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.decoder().T + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return self.decode(z), z

    def _sparse_decode(self, values: torch.Tensor, indices: torch.Tensor, dec_t: torch.Tensor) -> torch.Tensor:
        """sum_j z_j d_j over only the k active latents: O(B k d) instead of O(B n_latents d)."""
        return torch.einsum("bk,bkd->bd", values, dec_t[indices])

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        pre = self.pre_activation(x)
        dec_t = self.decoder().T  # (n_latents, d_in)
        if self.cfg.kind == "topk":
            top = pre.topk(self.cfg.k, dim=-1)
            recon = self._sparse_decode(top.values, top.indices, dec_t) + self.b_dec
            fired = torch.zeros(self.n_latents, dtype=torch.bool, device=x.device)
            fired[top.indices[top.values > 0]] = True
        else:
            recon = pre @ dec_t + self.b_dec
            fired = (pre > 0).any(0)
        mse = (recon - x).pow(2).sum(-1).mean()
        self.steps_since_fired += 1
        self.steps_since_fired[fired] = 0
        extra = torch.zeros((), device=x.device)
        if self.cfg.kind == "relu":
            extra = self.cfg.l1 * pre.sum(-1).mean()
        else:
            dead = self.steps_since_fired > self.cfg.dead_after
            if dead.any():
                resid = (x - recon).detach()
                k_aux = min(self.cfg.aux_k, int(dead.sum()))
                aux_top = pre.masked_fill(~dead, 0.0).topk(k_aux, dim=-1)
                aux_recon = self._sparse_decode(aux_top.values, aux_top.indices, dec_t)
                aux = (aux_recon - resid).pow(2).sum(-1).mean() / resid.pow(2).sum(-1).mean().clamp(min=1e-9)
                extra = self.cfg.aux_coef * aux
        return mse + extra, {"mse": float(mse.detach())}

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(directory / "sae.safetensors"))
        (directory / "sae_config.json").write_text(json.dumps({"d_in": self.d_in, **asdict(self.cfg)}, indent=2))

    @classmethod
    def load(cls, directory: Path) -> SparseAutoencoder:
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "sae_config.json").read_text())
        d_in = meta.pop("d_in")
        sae = cls(d_in, SAEConfig(**meta))
        sae.load_state_dict(load_file(str(directory / "sae.safetensors")))
        return sae


@torch.no_grad()
def sae_quality(sae: SparseAutoencoder, x: torch.Tensor) -> dict:
    """Explained variance of the reconstruction, mean L0, and the share of latents that never fire."""
    recon, z = sae(x)
    ev = 1 - (x - recon).pow(2).sum() / (x - x.mean(0)).pow(2).sum()
    fires = (z > 0).sum(0)
    return {"explained_variance": float(ev), "l0": float((z > 0).sum(-1).float().mean()),
            "dead_latents": int((fires == 0).sum()), "dead_fraction": float((fires == 0).float().mean()),
            "n_latents": sae.n_latents, "mse": float((x - recon).pow(2).sum(-1).mean())}


def train_sae(vectors: np.ndarray, cfg: SAEConfig | None = None, log=None) -> tuple[SparseAutoencoder, dict]:
    """Fit an SAE on item vectors (rows); returns the model and its quality figures on those rows.

    Runs on a forked RNG: reseeding the global one here made a model built after a freshly trained SAE
    start from other weights than one built after a cached SAE, so one seed gave two results."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed if cfg else SAEConfig().seed)
        return _train_sae(vectors, cfg or SAEConfig(), log)


def _train_sae(vectors: np.ndarray, cfg: SAEConfig, log=None) -> tuple[SparseAutoencoder, dict]:
    x = torch.as_tensor(np.asarray(vectors), dtype=torch.float32)
    if len(x) < 2 or not torch.isfinite(x).all():
        raise ValueError("SAE training needs at least two finite item vectors")
    sae = SparseAutoencoder(x.shape[1], cfg)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))  # geometric-median-like start: reconstruct the mean for free
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    g = torch.Generator().manual_seed(cfg.seed)
    history, step = [], 0
    while step < cfg.steps:
        perm = torch.randperm(len(x), generator=g)
        tot, n = 0.0, 0
        for s in range(0, len(x), cfg.batch_size):
            batch = x[perm[s:s + cfg.batch_size]]
            loss, _ = sae.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot, n, step = tot + loss.item() * len(batch), n + len(batch), step + 1
            if step >= cfg.steps:
                break
        history.append(tot / n)
    if log:
        log(f"sae: {step} steps, loss {history[0]:.5f} -> {history[-1]:.5f}")
    stats = sae_quality(sae, x)
    stats["loss_first_epoch"], stats["loss_last_epoch"] = history[0], history[-1]
    return sae, stats


def fit_or_load_sae(vectors: np.ndarray, split, cfg, cache_root: Path, random: bool = False, log=None):
    """Train the SAE on training items' vectors, or reuse one trained on identical inputs and settings (its cache
    key: the vectors and the SAE config)."""
    if random:  # "random latents" ablation: same architecture and sparsity, untrained directions
        sae = SparseAutoencoder(vectors.shape[1], cfg)
        with torch.no_grad():
            sae.b_dec.copy_(torch.as_tensor(vectors[1:].mean(0)))
        return sae, {"random": True}
    train_items = np.unique(split.train["item"].to_numpy())
    x = vectors[train_items]
    h = hashlib.sha256(x.tobytes())
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    d = cache_root / "sae" / h.hexdigest()[:16]
    if (d / "sae.safetensors").exists() and (d / "quality.json").exists():
        try:
            return SparseAutoencoder.load(d), json.loads((d / "quality.json").read_text())
        except Exception as exc:  # noqa: BLE001 - any damage means: train again
            warnings.warn(f"SAE cache {d} is damaged ({type(exc).__name__}: {exc}); retraining it", stacklevel=2)
    sae, stats = train_sae(x, cfg, log=log)

    def write(tmp: Path) -> None:
        sae.save(tmp)
        (tmp / "quality.json").write_text(json.dumps(stats, indent=2))

    write_dir_atomic(d, write, what="SAE cache")
    return sae, stats
