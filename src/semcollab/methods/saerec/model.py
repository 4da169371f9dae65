"""SAERec: sparse-autoencoder intents steer a self-attentive sequential recommender.

Three branches read the SASRec hidden state h_t at every position t:

* sequence branch: h_t itself;
* personal-intent branch: attention from h_t to the user's top ``n_personal`` intents at position t;
* public-intent branch: attention from h_t to ``n_public`` intents shared by all users.

An intent token is a learned projection of its SAE decoder direction. Every choice (``retrieval``,
``public``, ``fusion``, ``intents_file``, the ablations) has this project's variant (the default) and the
authors' (/work/shared/methods/saerec.md); docs/saerec/design.md says what each computes and why. With either
fusion each branch's output is linear in its intent tokens, so the score of item j splits exactly into a
sequence term plus one term per intent, which is what :meth:`SAERec.explain` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import allowed, at_least, fraction, one_of
from ...models.base import ServingFactors, next_item_loss
from ...models.sasrec import SASRec, SASRecConfig
from ...registry import register
from ...text import TextSettings
from .intent_branch import IntentBranch


@dataclass
class SAERecConfig(SASRecConfig, TextSettings):
    n_personal: int = at_least(5, 1)
    n_public: int = at_least(5, 1)
    recent: int = at_least(20, 1)  # items of the history that define personal intents
    use_personal: bool = True
    use_public: bool = True
    intent_source: str = one_of("sae", "sae", "random", "shuffled")
    sae: dict = field(default_factory=dict)  # SAEConfig fields (kind, expansion, k, tied, steps, ...)
    # personal intents: tfidf = activations of the recent items x item-level IDF | cosine = ReLU(cos(input
    # embedding at t, intent token)) x EMA IDF (the authors')
    retrieval: str = one_of("tfidf", "tfidf", "cosine")
    # public intents: frequent = most activation mass over training interactions | low_idf = lowest IDF (authors')
    public: str = one_of("frequent", "frequent", "low_idf")
    # branch fusion: gate = residual sigmoid gates | attention = softmax over the intent branches (authors')
    fusion: str = one_of("gate", "gate", "attention")
    # dropout on the intent branches' attention weights and outputs. 0 (the default, as first measured): the
    # sequence path is dropped at `dropout` while the text path is clean, which may favour the intent shortcut
    branch_dropout: float = fraction(0.0)
    idf_decay: float = fraction(0.9)  # EMA decay of the cosine retrieval's intent document frequencies
    # intents.json of this SAE with "keep" flags (explain.lm_labels.judge_library): only kept latents are intents
    intents_file: str | None = allowed(None, lambda v: v.strip() != "", "a path to an intents.json with keep flags")

    def _check(self):
        yield from super()._check()
        if self.empty_text == "skip":  # an all-zero row would be fitted by the SAE as one shared, bias-only intent
            yield "empty_text", ("'skip' is not supported by saerec (the SAE needs a text vector for every item); "
                                 "use 'template' or 'refuse'")
        if self.intents_file is not None and not Path(self.intents_file).is_file():
            yield "intents_file", f"must name an existing intents.json, got {self.intents_file!r} (not a file)"
        from ...config import from_dict
        from .sae import SAEConfig

        from_dict(SAEConfig, self.sae, prefix="model_params.sae.")  # raises on a bad SAE setting, now


# positions x latents scored at once by the cosine retrieval (float32: 32 MiB per intermediate)
COSINE_CHUNK_ELEMS = 1 << 23


@register("saerec", task="ranking", config=SAERecConfig)
class SAERec(SASRec):
    def __init__(self, n_users: int, n_items: int, cfg: SAERecConfig, act_idx: np.ndarray, act_val: np.ndarray,
                 directions: np.ndarray, idf: np.ndarray, public: np.ndarray, keep: np.ndarray | None = None):
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
        self.n_latents = self.directions.shape[0]
        # buffers of the authors' variants exist only when chosen, so runs saved with the defaults still load
        if keep is not None:  # ids of the latents that may be intents (the keep-list)
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != (self.n_latents,) or not keep.any():
                raise ValueError(f"keep must be a boolean mask over {self.n_latents} latents with at least one kept")
            self.register_buffer("candidates", torch.as_tensor(np.flatnonzero(keep), dtype=torch.long))
        if cfg.retrieval == "cosine":  # EMA document frequency of each intent, and EMA number of documents
            self.register_buffer("ema_df", torch.zeros(self.n_latents))
            self.register_buffer("ema_total", torch.ones(()))
        h = cfg.hidden
        self.intent_proj = nn.Linear(self.directions.shape[1], h)
        self.personal = IntentBranch(h, cfg.branch_dropout)
        self.public = IntentBranch(h, cfg.branch_dropout)
        if cfg.fusion == "gate":
            self.gate = nn.Linear(3 * h, 2)  # sigmoid gates of the personal and public branches
        elif cfg.fusion == "attention":  # query from the sequence state, keys from the intent-branch states
            self.fuse_q, self.fuse_k = nn.Linear(h, h), nn.Linear(h, h)
        else:
            raise ValueError(f"fusion must be gate or attention, got {cfg.fusion!r}")
        if cfg.retrieval not in ("tfidf", "cosine"):
            raise ValueError(f"retrieval must be tfidf or cosine, got {cfg.retrieval!r}")

    # ------------------------------------------------------------------ construction from data
    @classmethod
    def from_split(cls, split, cfg: SAERecConfig, log=None) -> SAERec:
        cls.check_similarity(cfg)  # before the SAE fit
        from ...config import from_dict
        from ...hub.wheels import default_cache_dir
        from ...text import EmbedConfig, item_embeddings
        from .intents import (
            build_library,
            item_activations,
            latent_idf,
            load_keep,
            low_idf_intents,
            public_intents,
            shuffle_items,
        )
        from .sae import SAEConfig, fit_or_load_sae

        vecs, _ = item_embeddings(split, EmbedConfig.from_model_config(cfg))
        sae_cfg = from_dict(SAEConfig, cfg.sae, prefix="model_params.sae.")
        width = sae_cfg.expansion * vecs.shape[1]  # the SAE's latents, known once the text vectors are made
        if sae_cfg.k > width:  # top-k of fewer latents is undefined: refused before the SAE trains
            from ...config import ConfigError

            raise ConfigError(f"config key 'model_params.sae.k' must be between 1 and the SAE width "
                              f"(model_params.sae.expansion {sae_cfg.expansion} x text vector dim {vecs.shape[1]} "
                              f"= {width}), got {sae_cfg.k}")
        sae, _ = fit_or_load_sae(vecs, split, sae_cfg, Path(cfg.cache_dir or default_cache_dir()),
                                 random=cfg.intent_source == "random", log=log)
        if cfg.intent_source not in ("sae", "random", "shuffled"):
            raise ValueError(f"intent_source must be sae, random or shuffled, got {cfg.intent_source!r}")
        idx, val = item_activations(sae, vecs)
        idf = latent_idf(idx[1:], val[1:], sae.n_latents)
        keep = None
        if cfg.intents_file is not None:  # its TF-IDF labels must be this SAE's, or the flags mean other latents
            lib = build_library(idx, val, split.render_texts(cfg.template), sae.n_latents)
            keep = load_keep(cfg.intents_file, lib.labels)
        allowed_ids = None if keep is None else np.flatnonzero(keep)
        if cfg.intent_source == "shuffled":  # after the keep-list, which names the trained SAE's own latents
            idx, val = shuffle_items(idx, val, seed=sae_cfg.seed)
        if cfg.public == "low_idf":  # with cosine retrieval only the start: training re-chooses them from the EMA
            public = low_idf_intents(idf, cfg.n_public, allowed_ids)
        else:
            public = public_intents(idx, val, split.train["item"].to_numpy(), sae.n_latents, cfg.n_public, allowed_ids)
        model = cls(split.n_users, split.n_items, cfg, idx, val, sae.decoder().T.detach().numpy(), idf, public, keep)
        model.sae = sae
        return model

    # ------------------------------------------------------------------ intent retrieval
    def _candidate_ids(self) -> torch.Tensor:
        c = getattr(self, "candidates", None)
        return torch.arange(self.n_latents, device=self.directions.device) if c is None else c

    def cosine_idf(self) -> torch.Tensor:
        """IDF of every latent from the EMA document frequencies (cosine retrieval): log((1 + N) / (1 + df))."""
        return torch.log((1 + self.ema_total) / (1 + self.ema_df))

    def lowest_idf(self, idf: torch.Tensor) -> torch.Tensor:
        """The ``n_public`` candidate latents with the lowest ``idf`` (ties: lower id first)."""
        ids = self._candidate_ids()
        return ids[torch.argsort(idf[ids], stable=True)[: len(self.public_ids)]]

    def personal_intents(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position, the top ``n_personal`` intents (``latents``, ``weights``), each ``(B, L, P)``;
        weight 0 marks an empty slot (padding, or fewer intents than slots)."""
        if self.cfg.retrieval == "cosine":
            return self.cosine_intents(seqs)
        return self.tfidf_intents(seqs)

    def tfidf_intents(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position, the top ``n_personal`` latents over the last ``recent`` items up to that position.

        Works in a per-sequence compact latent space (at most L*k distinct latents) instead of
        (B, L, n_latents), so memory stays small with 16x-expanded dictionaries."""
        B, L = seqs.shape
        k, m = self.act_idx.shape[1], self.n_latents
        ids = self.act_idx[seqs]  # (B, L, k)
        w = self.act_val[seqs] * self.idf[ids]
        if getattr(self, "candidates", None) is not None:  # latents off the keep-list weigh nothing
            kept = torch.zeros(m, device=seqs.device)
            kept[self.candidates] = 1.0
            w = w * kept[ids]
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

    def user_vectors(self, seqs: torch.Tensor) -> torch.Tensor:
        """The cosine retrieval's user vector at each position: SASRec's input embedding (item x sqrt(d) +
        position) before the transformer, without dropout, so retrieval is deterministic."""
        L = seqs.shape[1]
        pos = torch.arange(self.max_len - L, self.max_len, device=seqs.device)
        return self.item_emb(seqs) * (self.cfg.hidden ** 0.5) + self.pos_emb(pos)[None]

    @torch.no_grad()
    def cosine_intents(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per position t, the top ``n_personal`` intents by ReLU(cos(u_t, token_j)) x IDF_j (the authors' rule).

        u_t depends on item t only. Scores come from the IDF as it stood before this batch; in training mode
        the batch is then added to the EMA (and ``low_idf`` public intents re-chosen). Only non-padding
        positions are scored, against the candidates in chunks of latents with a running top-P, so the
        largest intermediate is ~``COSINE_CHUNK_ELEMS`` floats whatever the dictionary size."""
        B, L = seqs.shape
        valid = seqs > 0
        u = F.normalize(self.user_vectors(seqs)[valid].float(), dim=-1)  # (N, H)
        n, cand = u.shape[0], self._candidate_ids()
        P = min(self.cfg.n_personal, len(cand))
        idf = self.cosine_idf()
        fired = torch.zeros(self.n_latents, device=seqs.device)
        best_v = torch.zeros(n, 0, device=seqs.device)
        best_i = torch.zeros(n, 0, dtype=torch.long, device=seqs.device)
        chunk = max(1, COSINE_CHUNK_ELEMS // max(n, 1))
        for s in range(0, len(cand) if n else 0, chunk):
            ids = cand[s:s + chunk]
            tok = F.normalize(self.intent_proj(self.directions[ids]).float(), dim=-1)  # (C, H)
            score = (u @ tok.T).clamp_(min=0)  # (N, C) ReLU(cos), then x IDF in place
            fired[ids] = torch.count_nonzero(score, dim=0).to(fired.dtype)  # positions scoring > 0
            v, j = score.mul_(idf[ids]).topk(min(P, len(ids)), dim=1)
            best_v, best_i = torch.cat([best_v, v], 1), torch.cat([best_i, ids[j]], 1)
            top = best_v.topk(min(P, best_v.shape[1]), dim=1)
            best_v, best_i = top.values, best_i.gather(1, top.indices)
        latents = torch.zeros(B, L, P, dtype=torch.long, device=seqs.device)
        weights = torch.zeros(B, L, P, device=seqs.device)
        if n:
            latents[valid], weights[valid] = best_i, best_v
        if self.training and n:
            self.update_idf(fired, n)
        return latents, weights

    @torch.no_grad()
    def update_idf(self, fired: torch.Tensor, n_docs: int) -> None:
        """Add one batch (``fired[j]`` of its ``n_docs`` positions scored intent j > 0) to the EMA; with
        ``public=low_idf``, re-choose the public intents from the new IDF."""
        d = self.cfg.idf_decay
        self.ema_df.mul_(d).add_(fired.to(self.ema_df.dtype), alpha=1 - d)
        self.ema_total.mul_(d).add_((1 - d) * n_docs)
        if self.cfg.public == "low_idf":
            self.public_ids.copy_(self.lowest_idf(self.cosine_idf()))

    def _fuse(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Weights (B, L, 3) of the sequence, personal and public branch states; the sequence weight is 1."""
        h_seq = parts[0]
        off = torch.tensor([not self.cfg.use_personal, not self.cfg.use_public], device=h_seq.device)
        if self.cfg.fusion == "gate":
            g_int = torch.sigmoid(self.gate(torch.cat(parts, -1))).masked_fill(off, 0.0)
        else:
            logits = torch.einsum("blh,blkh->blk", self.fuse_q(h_seq), self.fuse_k(torch.stack(parts[1:], -2)))
            logits = (logits * h_seq.shape[-1] ** -0.5).masked_fill(off, -torch.inf)
            g_int = torch.softmax(logits, -1).nan_to_num(0.0)  # both branches off: all -inf -> weights 0
        return torch.cat([torch.ones_like(g_int[..., :1]), g_int], -1)

    def _intent_tokens(self, latents: torch.Tensor) -> torch.Tensor:
        """``intent_proj(directions[latents])``, projecting each distinct latent once: a batch names a few
        thousand distinct latents but B x L x P slots, and the projection was most of SAERec's cost."""
        uniq, inv = torch.unique(latents, return_inverse=True)
        return self.intent_proj(self.directions[uniq])[inv]

    def _branches(self, seqs: torch.Tensor, table: torch.Tensor | None = None, last_only: bool = False):
        """Fused states and branch parts at every position, or with ``last_only`` at the last position only
        (scoring needs no more: the intent branches are per position, so the transformer runs over the whole
        sequence but the personal intents are retrieved from the last window alone)."""
        h_seq = self.forward(seqs, table)
        seqs = seqs[:, -self.max_len:]
        if last_only:
            h_seq = h_seq[:, -1:]
            # tfidf intents at t sum the last `recent` items; the cosine ones read item t alone
            seqs = seqs[:, -(self.cfg.recent if self.cfg.retrieval == "tfidf" else 1):]
        B, L, H = h_seq.shape
        parts, extras = [h_seq], {}
        # the public intents as they stood before this batch: a training forward of the cosine retrieval
        # re-chooses them (low_idf) from an EMA that then includes this batch's later items
        public = self.public_ids.clone()
        if self.cfg.use_personal:
            lat, wts = self.personal_intents(seqs)
            if last_only:
                lat, wts = lat[:, -1:], wts[:, -1:]
            tokens = self._intent_tokens(lat)
            out, attn, values = self.personal(h_seq, tokens, wts > 0)
            parts.append(out)
            extras["personal"] = (lat, attn, values)
        else:
            if self.training and self.cfg.retrieval == "cosine" and self.cfg.public == "low_idf" and self.cfg.use_public:
                self.cosine_intents(seqs)  # no personal branch, but the public intents follow the EMA IDF
            parts.append(torch.zeros_like(h_seq))
        if self.cfg.use_public:
            tokens = self.intent_proj(self.directions[public])
            valid = torch.ones(B, L, len(public), dtype=torch.bool, device=seqs.device)
            out, attn, values = self.public(h_seq, tokens, valid)
            parts.append(out)
            extras["public"] = (public, attn, values)
        else:
            parts.append(torch.zeros_like(h_seq))
        g = self._fuse(parts)
        fused = sum(g[..., i:i + 1] * parts[i] for i in range(3))
        return fused, g, parts, extras

    def score(self, users: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        fused, *_ = self._branches(seqs, last_only=True)
        return fused[:, -1] @ self.item_table().T

    def serving_factors(self) -> ServingFactors | None:
        if type(self).score is not SAERec.score:
            return None
        return ServingFactors(self.item_table().detach().clone(),
                              lambda u, s: self._branches(s, last_only=True)[0][:, -1])

    def loss(self, batch: dict) -> torch.Tensor:
        fused, *_ = self._branches(batch["seqs"])
        return next_item_loss(fused, batch["targets"], self.item_table(), self.loss_type, self.neg_samples)

    @torch.no_grad()
    def explain(self, seq: torch.Tensor, item: int) -> dict:
        """Split the score of ``item`` after history ``seq`` (1, L) into sequence and per-intent terms.

        ``gate`` holds the branch weights: sigmoid gates (``fusion=gate``) or attention weights
        (``fusion=attention``); the sequence weight is always 1. Runs in eval mode and restores the mode
        it found (explaining mid-training must not switch dropout off for the rest of the run)."""
        was = self.training
        self.eval()
        try:
            fused, g, parts, extras = self._branches(seq)
        finally:
            self.train(was)
        e = self.item_table()[item]
        out = {"score": float(fused[0, -1] @ e), "fusion": self.cfg.fusion,
               "gate": {"sequence": float(g[0, -1, 0]), "personal": float(g[0, -1, 1]), "public": float(g[0, -1, 2])},
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
