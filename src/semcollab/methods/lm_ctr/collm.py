"""CoLLM (Zhang et al., 2023): collaborative embeddings of a pretrained MF, mapped by an MLP into the LM's
input space, sit in the prompt as soft tokens <User_ID> and <Item_ID>; no semantic alignment.

Schedule: step 1 = TALLRec's LoRA (shared); MF trained alone on the CTR labels, then frozen; the mapping
is trained through the frozen LM (LoRA frozen) with the Yes/No loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...config import at_least, positive
from ...config.ctr import CTRTrainConfig
from ...lm import ITEM_TOKEN, USER_TOKEN, PromptTemplate
from ...models.mf_ctr import MFCTR, MFCTRConfig
from ...registry import register
from ...train.ctr import fit_ctr
from .base import LMCTRConfig, LMCTRModel, LMFitResult, part_fingerprint

COLLM_MOVIE = PromptTemplate("MovieList: {history}. The user's feature is <User_ID>. The target movie's feature is "
                             "<Item_ID>. TargetMovie: {title}.")


@dataclass
class CoLLMConfig(LMCTRConfig):
    mf_dim: int = at_least(256, 1)
    mf_bias: bool = True  # the best MF of experiments/ctr_ml1m/baselines.py (valid AUC); only its tables feed the LM
    mf_lr: float = positive(1e-2)
    mf_weight_decay: float = at_least(1e-4, 0, integer=False)
    mf_epochs: int = at_least(200, 1)
    mf_patience: int = at_least(10, 1)
    proj_hidden: int = at_least(1024, 1)
    soft_lr: float = positive(1e-3)  # step 3: the mapping (and, for SeLLa-Rec, MF and <Warm_ID>)
    soft_epochs: int = at_least(1, 1)


@register("collm", task="ctr", config=CoLLMConfig)
class CoLLM(LMCTRModel):
    template = COLLM_MOVIE

    def __init__(self, split, cfg: CoLLMConfig):
        super().__init__(split, cfg)
        d_lm = self.lm.get_input_embeddings().weight.shape[1]
        with torch.random.fork_rng(devices=[]):  # initial tables and mapping depend on model_params.seed only
            torch.manual_seed(cfg.seed + 1)
            self.mf = MFCTR(split.n_users, split.n_items, MFCTRConfig(dim=cfg.mf_dim, bias=cfg.mf_bias))
            self.proj = nn.Sequential(nn.Linear(cfg.mf_dim, cfg.proj_hidden), nn.GELU(),
                                      nn.Linear(cfg.proj_hidden, d_lm))

    def soft_vectors(self, batch: dict) -> dict[int, torch.Tensor]:
        return {self.token_ids[USER_TOKEN]: self.scaled(self.proj(self.mf.user_emb(batch["users"]))),
                self.token_ids[ITEM_TOKEN]: self.scaled(self.proj(self.mf.item_emb(batch["items"])))}

    def mf_train_config(self, train_cfg) -> CTRTrainConfig:
        c = self.cfg
        return CTRTrainConfig(epochs=c.mf_epochs, lr=c.mf_lr, weight_decay=c.mf_weight_decay, patience=c.mf_patience,
                              seed=c.seed, device=train_cfg.device, progress=False)

    def fit_mf(self, split, train_cfg, device, log, module=None):
        """Train the MF tables (``module``: a wrapper whose loss adds terms, for SeLLa-Rec step 2) on every
        training row and early-stop on every validation row: MF costs seconds, so the CPU budget that cuts
        the LM stages' rows does not apply to it."""
        whole = split.unsubsampled()
        if log and whole is not split:
            log(f"MF stage: all {len(whole.parts['train'])} training rows (the LM stages use "
                f"{len(split.parts['train'])})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            return fit_ctr(module or self.mf, whole, self.mf_train_config(train_cfg), device,
                           log=(lambda m: None))

    def mf_key(self, split) -> dict:
        """What the frozen MF of later steps depends on: its settings and every train / valid row."""
        c = self.cfg
        whole = split.unsubsampled()
        return {"train": part_fingerprint(whole.parts["train"]), "valid": part_fingerprint(whole.parts["valid"]),
                **{k: getattr(c, k) for k in ("mf_dim", "mf_bias", "mf_lr", "mf_weight_decay", "mf_epochs",
                                              "mf_patience")}}

    def step3_key(self, split, extra: dict) -> dict:
        c = self.cfg
        return {"step1": self.step1_key(split), "mf": self.mf_key(split), "proj_hidden": c.proj_hidden, "lr": c.soft_lr,
                "epochs": c.soft_epochs, "template": self.template.template, **extra}

    def fit_step1_and_frozen_mf(self, split, train_cfg, device, log) -> LMFitResult:
        """Step 1 (shared LoRA; the LM frozen afterwards), then the MF trained alone and frozen."""
        out = LMFitResult(dtype=self.dtype_info)
        out.add("step1-lora", self.fit_step1(split, train_cfg, log))
        self.freeze_lm()
        out.add("mf", self.fit_mf(split, train_cfg, device, log))
        for p in self.mf.parameters():
            p.requires_grad_(False)
        return out

    def fit_ctr(self, split, train_cfg, device, log=print) -> LMFitResult:
        out = self.fit_step1_and_frozen_mf(split, train_cfg, device, log)
        res, _ = self.run_stage("collm-mapping", self.step3_key(split, {"model": "collm"}), {"proj": self.proj},
                                split, self.cfg.soft_lr, self.cfg.soft_epochs, train_cfg, log, max_rows=self.cfg.soft_max_rows)
        out.add("collm-mapping", res)
        return out
