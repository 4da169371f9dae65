"""SAERec: sparse-autoencoder intents steer a self-attentive sequential recommender.

Three branches read the SASRec hidden state h_t at every position t:

* sequence branch: h_t itself;
* personal-intent branch: attention from h_t to the user's top ``n_personal`` intents, retrieved at
  position t from the ``recent`` items up to and including t (never from later items, so training
  cannot peek at targets) and weighted by TF-IDF over latents;
* public-intent branch: attention from h_t to the ``n_public`` globally most frequent intents.

An intent token is a learned projection of its SAE decoder direction. Adaptive gates add the intent
branches to the sequence state: h = h_seq + g_per h_per + g_pub h_pub, with g = sigmoid(W[h_seq;
h_per; h_pub]) per position. (A softmax over the three branches collapsed onto the sequence branch
during training on ML-100K -- gate 1.00/0.00/0.00, so intents received no gradient and explained
nothing; residual sigmoid gates cannot starve the sequence branch, so they have no reason to close.)
Each branch's output is linear in its intent tokens, so the score of item j splits exactly into a
sequence term plus one term per intent, which is what :meth:`SAERec.explain` reports.

Ablations: ``use_personal=false``, ``use_public=false``, ``intent_source=random`` (an untrained SAE:
random latent directions, same sparsity)."""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import at_least, one_of
from ..fsutil import write_dir_atomic
from ..text import TextSettings
from .base import next_item_loss
from .sasrec import SASRec, SASRecConfig


@dataclass
class SAERecConfig(SASRecConfig, TextSettings):
    n_personal: int = at_least(5, 1)
    n_public: int = at_least(5, 1)
    recent: int = at_least(20, 1)  # items of the history that define personal intents
    use_personal: bool = True
    use_public: bool = True
    intent_source: str = one_of("sae", "sae", "random")
    sae: dict = field(default_factory=dict)  # SAEConfig fields (kind, expansion, k, tied, steps, ...)

    def _check(self):
        yield from super()._check()
        from ..config import from_dict
        from .sae import SAEConfig

        from_dict(SAEConfig, self.sae, prefix="model_params.sae.")  # raises on a bad SAE setting, now


class IntentBranch(nn.Module):
    """Single-head attention from positions to intent tokens; output linear in the tokens."""

    def __init__(self, hidden: int):
        super().__init__()
        self.q, self.k = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.ov = nn.Linear(hidden, hidden, bias=False)
        self.scale = hidden ** -0.5

    def forward(self, h: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor):
        """h (B, L, H); tokens (B, L, P, H) or (P, H); valid (B, L, P) bool -> out (B, L, H), attn (B, L, P)."""
        if tokens.dim() == 2:
            logits = torch.einsum("blh,ph->blp", self.q(h), self.k(tokens)) * self.scale
            values = self.ov(tokens)
            attn = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)
            return torch.einsum("blp,ph->blh", attn, values), attn, values
        logits = torch.einsum("blh,blph->blp", self.q(h), self.k(tokens)) * self.scale
        attn = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1).nan_to_num(0.0)
        values = self.ov(tokens)
        return torch.einsum("blp,blph->blh", attn, values), attn, values


class SAERec(SASRec):
    def __init__(self, n_users: int, n_items: int, cfg: SAERecConfig, act_idx: np.ndarray, act_val: np.ndarray,
                 directions: np.ndarray, idf: np.ndarray, public: np.ndarray):
        super().__init__(n_users, n_items, cfg)
        if act_idx.shape[0] != n_items + 1:
            raise ValueError(f"activation table has {act_idx.shape[0]} rows, expected {n_items + 1}")
        val = torch.as_tensor(act_val, dtype=torch.float32).clone()
        val[0] = 0  # padding has no intents
        self.register_buffer("act_idx", torch.as_tensor(act_idx, dtype=torch.long))
        self.register_buffer("act_val", val)
        self.register_buffer("directions", torch.as_tensor(directions, dtype=torch.float32))  # (n_latents, d_text)
        self.register_buffer("idf", torch.as_tensor(idf, dtype=torch.float32))
        self.register_buffer("public_ids", torch.as_tensor(public, dtype=torch.long))
        h = cfg.hidden
        self.intent_proj = nn.Linear(self.directions.shape[1], h)
        self.personal = IntentBranch(h)
        self.public = IntentBranch(h)
        self.gate = nn.Linear(3 * h, 2)  # sigmoid gates of the personal and public branches
        self.n_latents = self.directions.shape[0]

    # ------------------------------------------------------------------ construction from data
    @classmethod
    def from_split(cls, split, cfg: SAERecConfig, log=None) -> SAERec:
        from ..config import from_dict
        from ..data.loaders import default_cache_dir
        from ..explain.intents import item_activations, latent_idf, public_intents
        from ..text import EmbedConfig, item_embeddings
        from .sae import SAEConfig

        vecs, _ = item_embeddings(split, EmbedConfig.from_model_config(cfg))
        sae_cfg = from_dict(SAEConfig, cfg.sae, prefix="model_params.sae.")
        sae, _ = fit_or_load_sae(vecs, split, sae_cfg, Path(cfg.cache_dir or default_cache_dir()),
                                 random=cfg.intent_source == "random", log=log)
        if cfg.intent_source not in ("sae", "random"):
            raise ValueError(f"intent_source must be sae or random, got {cfg.intent_source!r}")
        idx, val = item_activations(sae, vecs)
        idf = latent_idf(idx[1:], val[1:], sae.n_latents)
        public = public_intents(idx, val, split.train["item"].to_numpy(), sae.n_latents, cfg.n_public)
        model = cls(split.n_users, split.n_items, cfg, idx, val, sae.decoder().T.detach().numpy(), idf, public)
        model.sae = sae
        return model

    # ------------------------------------------------------------------ intent retrieval
    def personal_intents(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position, the top ``n_personal`` latents over the last ``recent`` items up to that position.

        Works in a per-sequence compact latent space (at most L*k distinct latents) instead of
        (B, L, n_latents), so memory stays small with 16x-expanded dictionaries."""
        B, L = seqs.shape
        k, m = self.act_idx.shape[1], self.n_latents
        ids = self.act_idx[seqs]  # (B, L, k)
        w = self.act_val[seqs] * self.idf[ids]
        key = (ids + torch.arange(B, device=seqs.device)[:, None, None] * m).reshape(-1)
        uniq, inv = torch.unique(key, return_inverse=True)
        row_start = torch.searchsorted(uniq, torch.arange(B, device=seqs.device) * m)
        local = inv.view(B, L * k) - row_start[:, None]
        U = int(local.max()) + 1
        dense = torch.zeros(B, L, U, device=seqs.device).scatter_add_(2, local.view(B, L, k), w)
        cum = dense.cumsum(1)
        r = self.cfg.recent
        if r < L:
            cum = cum - F.pad(cum, (0, 0, r, 0))[:, :L]
        top = cum.topk(min(self.cfg.n_personal, U), dim=-1)
        lat_of_local = torch.zeros(B, U, dtype=torch.long, device=seqs.device)
        # uniq is sorted by (row, latent): row b's latents are uniq[row_start[b] : row_start[b+1]]
        row = uniq // m
        lat_of_local[row, torch.arange(len(uniq), device=seqs.device) - row_start[row]] = uniq % m
        latents = torch.gather(lat_of_local, 1, top.indices.view(B, -1)).view(B, L, -1)
        return latents, top.values

    def _branches(self, seqs: torch.Tensor, table: torch.Tensor | None = None):
        h_seq = self.forward(seqs, table)
        seqs = seqs[:, -self.max_len:]
        B, L, H = h_seq.shape
        parts, extras = [h_seq], {}
        if self.cfg.use_personal:
            lat, wts = self.personal_intents(seqs)
            tokens = self.intent_proj(self.directions[lat])
            out, attn, values = self.personal(h_seq, tokens, wts > 0)
            parts.append(out)
            extras["personal"] = (lat, attn, values)
        else:
            parts.append(torch.zeros_like(h_seq))
        if self.cfg.use_public:
            tokens = self.intent_proj(self.directions[self.public_ids])
            valid = torch.ones(B, L, len(self.public_ids), dtype=torch.bool, device=seqs.device)
            out, attn, values = self.public(h_seq, tokens, valid)
            parts.append(out)
            extras["public"] = (self.public_ids, attn, values)
        else:
            parts.append(torch.zeros_like(h_seq))
        off = torch.tensor([not self.cfg.use_personal, not self.cfg.use_public], device=seqs.device)
        g_int = torch.sigmoid(self.gate(torch.cat(parts, -1))).masked_fill(off, 0.0)
        g = torch.cat([torch.ones_like(g_int[..., :1]), g_int], -1)  # (B, L, 3): sequence weight is 1
        fused = sum(g[..., i:i + 1] * parts[i] for i in range(3))
        return fused, g, parts, extras

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        fused, *_ = self._branches(seqs)
        return fused[:, -1] @ self.item_table().T

    def loss(self, batch: dict) -> torch.Tensor:
        fused, *_ = self._branches(batch["seqs"])
        return next_item_loss(fused, batch["targets"], self.item_table(), self.loss_type, self.neg_samples)

    @torch.no_grad()
    def explain(self, seq: torch.Tensor, item: int) -> dict:
        """Split the score of ``item`` after history ``seq`` (1, L) into sequence and per-intent terms."""
        self.eval()
        fused, g, parts, extras = self._branches(seq)
        e = self.item_table()[item]
        out = {"score": float(fused[0, -1] @ e), "gate": {"sequence": float(g[0, -1, 0]),
               "personal": float(g[0, -1, 1]), "public": float(g[0, -1, 2])},
               "sequence_term": float(g[0, -1, 0] * (parts[0][0, -1] @ e)), "intents": []}
        for name, gi in (("personal", 1), ("public", 2)):
            if name not in extras:
                continue
            lat, attn, values = extras[name]
            a = attn[0, -1]
            vals = values[0, -1] if values.dim() == 4 else values
            lats = lat[0, -1] if lat.dim() == 3 else lat
            for p in range(len(a)):
                if a[p] <= 0:
                    continue
                j = int(lats[p])
                item_act = self.act_val[item][self.act_idx[item] == j]
                out["intents"].append({"kind": name, "latent": j, "attention": float(a[p]),
                                       "contribution": float(g[0, -1, gi] * a[p] * (vals[p] @ e)),
                                       "item_activation": float(item_act.sum()) if len(item_act) else 0.0})
        out["intents"].sort(key=lambda d: -d["contribution"])
        return out


def fit_or_load_sae(vectors: np.ndarray, split, cfg, cache_root: Path, random: bool = False, log=None):
    """Train the SAE on training items' vectors, or reuse one trained on identical inputs and settings."""
    from .sae import SparseAutoencoder, train_sae

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
