"""SAILRec (arXiv 2606.04514): collaborative soft tokens aligned to the LM's semantic space on both sides
(user and item), and attention steered toward or away from them by depth.

No public code exists (/work/shared/methods/sailrec.md); where the paper is silent the choice is ours and a
setting:

1. Step 1 = TALLRec's LoRA on the text prompt (the shared step-1 checkpoint of CoLLM and SeLLa-Rec).
2. MF pretrained on every training row, then frozen (CoLLM's MF stage).
3. Semantic targets from the step-1 LM (last-token state, float32, cached by content hash):
   item side -- "Movie: <title>"; user side -- a textual profile built from the user's liked training
   items by weighted vote (:func:`user_profiles`: the decades and title words that recur most, and the
   latest liked titles; the CoLLM ML-1M split has no genres).
4. Contrastive warm-up of the mappers, LM untouched: InfoNCE between the item mapper's output (CoLLM's MLP
   256 -> 1024 -> d_LM) and the item's semantic vector; and between the mean of the user mapper's tokens
   (:class:`QueryMapper`: learned queries cross-attending to memory slots made from the MF user vector)
   and the user's profile vector. Only users and items seen in training are aligned (an unseen one's MF
   vector is its random initialisation).
5. LoRA fine-tuning jointly with the mappers on the Yes/No loss (LoRA continues from step 1), with the
   prompt "... The user's feature is <User_ID> x n_user_tokens. The target movie's feature is <Item_ID>. ..."
   and hierarchical attention steering: an additive bias on the attention logits from every query to the
   keys of the collaborative tokens, per layer, from :func:`semcollab.methods.lm_ctr.steering.steering_schedule`
   (default suppress shallow 30% / neutral middle 50% / enhance deep 20%, growing with depth). The bias is
   applied through a registered attention function (no fork of the LM), in training and in scoring.

Ablations: ``steering=neutral`` (no steering; also enhance / suppress everywhere), ``user_align=false``,
``item_align=false``; ``steer_magnitude`` sweeps the bias size; ``train_lora=false`` freezes LoRA in step 5.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import at_least, fraction, one_of, positive
from ...lm import ITEM_TOKEN, USER_TOKEN, PromptTemplate, encode_texts
from ...models.base import info_nce
from ...registry import register
from .base import LMFitResult, _hash
from .collm import CoLLM, CoLLMConfig

SCHEDULES = ("suppress-neutral-enhance", "neutral", "enhance", "suppress")
STOPWORDS = frozenset("the a an and of in on to for with at by from is it its la le les de du des das der die el "
                      "ii iii part vs".split())


@dataclass
class SAILRecConfig(CoLLMConfig):
    n_user_tokens: int = at_least(4, 1)  # soft tokens the user mapper writes into the prompt
    mapper_hidden: int = at_least(256, 8)  # width inside the user mapper
    mapper_heads: int = at_least(4, 1)
    item_align: bool = True  # item-side contrastive warm-up (the "no item-side alignment" ablation: false)
    user_align: bool = True  # user-side contrastive warm-up
    align_temperature: float = positive(0.1)
    warmup_epochs: int = at_least(30, 0)  # over the aligned users / items: no LM forward, seconds on a CPU
    warmup_lr: float = positive(1e-3)
    warmup_batch_size: int = at_least(256, 2)
    steering: str = one_of("suppress-neutral-enhance", *SCHEDULES)
    steer_magnitude: float = at_least(1.0, 0, integer=False)
    steer_shallow: float = fraction(0.3)  # share of the layers (from the bottom) that are suppressed
    steer_deep: float = fraction(0.2)  # share of the layers (from the top) that are enhanced
    train_lora: bool = True  # step 5 tunes LoRA jointly with the mappers (paper); false: mappers only
    lora_lr: float | None = None  # step 5's LoRA learning rate; None: soft_lr, the mappers' rate
    profile_words: int = at_least(8, 1)
    profile_recent: int = at_least(3, 0)  # latest liked titles quoted in the profile
    semantic_batch_size: int = at_least(32, 1)

    def _check(self):
        parent = getattr(super(), "_check", None)
        if parent is not None:
            yield from parent()
        if self.lora_lr is not None:
            if not (math.isfinite(self.lora_lr) and self.lora_lr > 0):
                yield "lora_lr", f"must be a finite number > 0, or null for soft_lr; got {self.lora_lr!r}"
            elif not self.train_lora:
                yield "lora_lr", "is set but train_lora is false: the joint stage trains no LoRA to apply it to"
        if self.steer_shallow + self.steer_deep > 1:
            yield "steer_shallow", f"steer_shallow + steer_deep must be <= 1, got {self.steer_shallow} + {self.steer_deep}"
        if self.mapper_hidden % self.mapper_heads:
            yield "mapper_heads", f"must divide mapper_hidden ({self.mapper_hidden}), got {self.mapper_heads}"


class QueryMapper(nn.Module):
    """A few LM-space tokens from one MF user vector (a one-layer Q-Former): ``n_tokens`` learned queries
    cross-attend to ``n_tokens`` memory slots projected from the vector, then an MLP and a projection."""

    def __init__(self, in_dim: int, out_dim: int, n_tokens: int, hidden: int, heads: int):
        super().__init__()
        self.n_tokens, self.hidden = n_tokens, hidden
        self.memory = nn.Linear(in_dim, n_tokens * hidden)
        self.queries = nn.Parameter(torch.randn(n_tokens, hidden) * hidden ** -0.5)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """``u`` (B, in_dim) -> tokens (B, n_tokens, out_dim)."""
        mem = self.memory(u).view(len(u), self.n_tokens, self.hidden)
        q = self.queries.expand(len(u), -1, -1)
        h = self.norm1(q + self.attn(q, mem, mem, need_weights=False)[0])
        h = self.norm2(h + self.mlp(h))
        return self.out(h)


_YEAR = re.compile(r"\((\d{4})\)\s*$")


def _title_words(title: str) -> list[str]:
    title = _YEAR.sub("", title)
    return [w for w in re.findall(r"[a-z][a-z']+", title.lower()) if w not in STOPWORDS and len(w) > 2]


def user_profiles(split, n_words: int = 8, n_recent: int = 3) -> list[str]:
    """A short text per user (index = user index) from the liked items of the WHOLE training part (each liked
    row's item and its liked history): the decades and title words with the most votes, and the latest
    liked titles. Validation / test rows are never read, so the profile leaks nothing."""
    train = split.unsubsampled().parts["train"]
    liked: dict[int, list[int]] = {}
    for u, i, y, h in zip(train.users, train.items, train.labels, train.history):  # rows are in time order
        seq = liked.setdefault(int(u), [])
        for x in list(h) + ([int(i)] if y == 1 else []):
            if x > 0 and x not in seq:
                seq.append(int(x))
    profiles = []
    for u in range(split.n_users):
        items = liked.get(u, [])
        if not items:
            profiles.append("User profile: no liked movies yet.")
            continue
        words, decades = Counter(), Counter()
        for i in items:
            words.update(set(_title_words(split.titles[i])))
            m = _YEAR.search(split.titles[i])
            if m:
                decades[f"{m.group(1)[:3]}0s"] += 1
        dec = ", ".join(d for d, _ in decades.most_common(2)) or "unknown"
        top = ", ".join(w for w, _ in words.most_common(n_words)) or "none"
        recent = "; ".join(split.titles[i] for i in items[-n_recent:]) if n_recent else ""
        profiles.append(f"User profile: likes movies from the {dec}; recurring title words: {top}."
                        + (f" Recently liked: {recent}." if recent else ""))
    return profiles


@register("sailrec", task="ctr", config=SAILRecConfig)
class SAILRec(CoLLM):
    def __init__(self, split, cfg: SAILRecConfig):
        super().__init__(split, cfg)
        d_lm = self.lm.get_input_embeddings().weight.shape[1]
        users = " ".join([USER_TOKEN] * cfg.n_user_tokens)
        self.template = PromptTemplate(f"MovieList: {{history}}. The user's feature is {users}. The target movie's "
                                       f"feature is {ITEM_TOKEN}. TargetMovie: {{title}}.")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 4)
            self.user_mapper = QueryMapper(cfg.mf_dim, d_lm, cfg.n_user_tokens, cfg.mapper_hidden, cfg.mapper_heads)
        self.profiles = user_profiles(split, cfg.profile_words, cfg.profile_recent)
        self.register_buffer("item_semantic", torch.zeros(split.n_items + 1, d_lm))
        self.register_buffer("user_semantic", torch.zeros(split.n_users, d_lm))
        from .schedule import steering_schedule

        control = self.install_attention_control()
        self.schedule = steering_schedule(control.n_layers, cfg.steering, cfg.steer_magnitude, cfg.steer_shallow,
                                          cfg.steer_deep)
        control.set_bias(self.schedule)

    # ------------------------------------------------------------------ soft tokens
    def soft_vectors(self, batch: dict) -> dict[int, torch.Tensor]:
        users = self.scaled(self.user_mapper(self.mf.user_emb(batch["users"])))  # (B, n, d)
        return {self.token_ids[USER_TOKEN]: users,
                self.token_ids[ITEM_TOKEN]: self.scaled(self.proj(self.mf.item_emb(batch["items"])))}

    # ------------------------------------------------------------------ semantic targets
    def semantic_tables(self, split, log) -> None:
        """The step-1 LM's last-token states of item titles and user profiles (cached: several runs share them)."""
        from ...hub.wheels import default_cache_dir

        if self.attn_control is not None:  # plain text forwards: no collaborative keys to steer toward
            self.attn_control.set_keys(None)
        texts = ["Movie: " + t for t in self.titles[1:]] + self.profiles
        key = {"step1": self.step1_key(split), "texts": hashlib.sha256("\x00".join(texts).encode()).hexdigest()}
        path = Path(default_cache_dir()) / "lm-ctr" / f"sailrec-semantic-{_hash(key)}.npy"
        vecs = None
        if path.exists():
            try:
                vecs = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:  # a damaged cache file is recomputed, not trusted
                if log:
                    log(f"semantic cache {path} is unreadable ({exc}); recomputing")
        if vecs is None or vecs.shape[0] != len(texts):
            if log:
                log(f"semantic targets: {len(self.titles) - 1} titles + {len(self.profiles)} user profiles "
                    "from the step-1 LM")
            vecs = encode_texts(self.lm, self.tokenizer, texts, pooling="last",
                                batch_size=self.cfg.semantic_batch_size).astype(np.float32)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vecs)
            tmp.replace(path)
        n_items = len(self.titles) - 1
        with torch.no_grad():
            self.item_semantic[1:] = torch.as_tensor(vecs[:n_items])
            self.user_semantic[:] = torch.as_tensor(vecs[n_items:])

    # ------------------------------------------------------------------ contrastive warm-up
    def warmup(self, split, device, log) -> dict:
        """InfoNCE warm-up of the item and user mappers against the semantic targets (MF and LM frozen)."""
        c = self.cfg
        train = split.unsubsampled().parts["train"]
        items = torch.as_tensor(np.unique(train.items), device=device)
        users = torch.as_tensor(np.unique(train.users), device=device)
        sides = [(name, ids) for name, ids, on in (("item", items, c.item_align), ("user", users, c.user_align)) if on]
        if not sides or c.warmup_epochs == 0:
            return {"epochs": 0, "skipped": True}
        params = [p for m in ([self.proj] if c.item_align else []) + ([self.user_mapper] if c.user_align else [])
                  for p in m.parameters()]
        opt = torch.optim.AdamW(params, lr=c.warmup_lr)
        g = torch.Generator(device="cpu").manual_seed(c.seed + 5)
        history = {}
        for epoch in range(c.warmup_epochs):
            totals = {}
            for name, ids in sides:
                perm = ids[torch.randperm(len(ids), generator=g).to(device)]
                losses = []
                for s in range(0, len(perm), c.warmup_batch_size):
                    b = perm[s:s + c.warmup_batch_size]
                    if len(b) < 2:
                        continue
                    with torch.no_grad():
                        mf = self.mf.item_emb(b) if name == "item" else self.mf.user_emb(b)
                    if name == "item":
                        loss = info_nce(self.proj(mf), self.item_semantic[b], c.align_temperature)
                    else:
                        loss = info_nce(self.user_mapper(mf).mean(1), self.user_semantic[b], c.align_temperature)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    losses.append(float(loss.detach()))
                totals[name] = float(np.mean(losses)) if losses else float("nan")
            if epoch == 0:
                history["first"] = totals
            history["last"] = totals
        history["epochs"] = c.warmup_epochs
        if log:
            log(f"contrastive warm-up: InfoNCE {json.dumps(history['first'])} -> {json.dumps(history['last'])}")
        return history

    @torch.no_grad()
    def alignment_accuracy(self, split, device) -> dict:
        """Top-1 retrieval accuracy of mapped MF vectors among the semantic targets of the training users /
        items (chance = 1 / count): how aligned the tokens are before they enter the prompt."""
        train = split.unsubsampled().parts["train"]
        out = {}
        for name in ("item", "user"):
            ids = torch.as_tensor(np.unique(train.items if name == "item" else train.users), device=device)
            if name == "item":
                z, s = self.proj(self.mf.item_emb(ids)), self.item_semantic[ids]
            else:
                z, s = self.user_mapper(self.mf.user_emb(ids)).mean(1), self.user_semantic[ids]
            sim = F.normalize(z, dim=-1) @ F.normalize(s, dim=-1).T
            out[name] = {"top1": float((sim.argmax(1) == torch.arange(len(ids), device=device)).float().mean()),
                         "chance": 1.0 / len(ids), "count": len(ids)}
        return out

    # ------------------------------------------------------------------ schedule
    def fit_ctr(self, split, train_cfg, device, log=print) -> LMFitResult:
        c = self.cfg
        out = self.fit_step1_and_frozen_mf(split, train_cfg, device, log)
        self.semantic_tables(split, log)
        before = self.alignment_accuracy(split, device)
        warm = self.warmup(split, device, log)
        after = self.alignment_accuracy(split, device)
        out.stages["warmup"] = {**warm, "alignment_top1_before": before, "alignment_top1_after": after}
        if log:
            log(f"alignment top-1 before/after warm-up: item {before['item']['top1']:.3f} -> "
                f"{after['item']['top1']:.3f}, user {before['user']['top1']:.3f} -> {after['user']['top1']:.3f}")
        trainable = {"proj": self.proj, "user_mapper": self.user_mapper}
        if c.train_lora:
            for n, p in self.lm.named_parameters():
                p.requires_grad_("lora_" in n)
            trainable["lora"] = self.lm
        for m in (self.proj, self.user_mapper):
            for p in m.parameters():
                p.requires_grad_(True)
        key = self.step3_key(split, {
            "model": "sailrec", "semantic": "v1", "schedule": [round(b, 6) for b in self.schedule],
            **{k: getattr(c, k) for k in ("n_user_tokens", "mapper_hidden", "mapper_heads", "item_align", "user_align",
                                          "align_temperature", "warmup_epochs", "warmup_lr", "warmup_batch_size",
                                          "train_lora", "profile_words", "profile_recent")},
            # only when set, so joint stages cached before the setting existed still resume (the config check
            # refuses lora_lr without train_lora, so a set lora_lr always has LoRA to scale)
            **({"lora_lr": c.lora_lr} if c.lora_lr is not None else {})})
        scale = {"lora": c.lora_lr / c.soft_lr} if c.lora_lr is not None else None
        res, _ = self.run_stage("sailrec-joint", key, trainable, split, c.soft_lr, c.soft_epochs, train_cfg, log,
                                max_rows=c.soft_max_rows, lr_scale=scale)
        out.add("sailrec-joint", res)
        self.freeze_lm()
        return out


__all__ = ["SAILRec", "SAILRecConfig", "QueryMapper", "user_profiles"]
