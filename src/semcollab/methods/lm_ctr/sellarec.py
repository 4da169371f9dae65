"""SeLLa-Rec (arXiv 2504.10107): collaborative knowledge aligned to the LM's semantic space before it
enters the prompt as three soft tokens <User_ID>, <Item_ID>, <Warm_ID>.

1. LoRA on the text prompt (TALLRec; shared step-1 checkpoint).
2. Semantic distillation: each item's vector = the step-1 LM's last-layer state at the last token of
   "Movie: <title>" (float32; the authors' script truncates it to integers -- not copied). MF (d=256) is
   trained with BCE plus an InfoNCE alignment (temperature 0.2) between the hybrid projection
   (MLP 256 -> 1024 -> GELU -> d_LM) of its item vectors and a trainable copy of that semantic table.
3. The prompt carries <User_ID> = projection(MF user), <Item_ID> = projection(MF item) and <Warm_ID> =
   a linear map of the distilled semantic vector; MF, projection and that map are trained, LoRA frozen.
   The projection starts from step 2 (the released script forgets to; ``proj_init=random`` is that
   ablation).

Ablations: ``use_warm=false`` (no <Warm_ID>), ``align_weight=0`` (no contrastive alignment),
``proj_init=random``.

Budget settings (defaults follow the paper): ``train_mf=false`` keeps the step-2 MF tables frozen in step 3
(only the projection and the <Warm_ID> map learn). On a CPU budget of a few hundred step-3 rows, training the
tables let the loss fall on those rows and their users/items drift away from the aligned tables the other rows
keep (docs/results.md section 10). ``warm_init=identity`` starts the <Warm_ID> map as the identity: the
semantic vectors are last-layer states and Gemma ties its input and output embeddings, so the identity already
points them into the input space; a random start made step 3 diverge there."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...config import at_least, one_of, positive
from ...lm import WARM_TOKEN, encode_texts
from ...models.base import info_nce
from ...registry import register
from .base import LMFitResult
from .collm import COLLM_MOVIE, CoLLM, CoLLMConfig
from .prompts import SELLA_MOVIE


@dataclass
class SeLLaRecConfig(CoLLMConfig):
    align_weight: float = at_least(1.0, 0, integer=False)  # 0 = the "no contrastive alignment" ablation
    temperature: float = positive(0.2)
    use_warm: bool = True
    proj_init: str = one_of("step2", "step2", "random")
    train_mf: bool = True  # step 3 trains the MF tables too (paper); false: projection and <Warm_ID> map only
    warm_init: str = one_of("random", "random", "identity")
    semantic_batch_size: int = at_least(32, 1)


class Step2(nn.Module):
    """MF trained with BCE + InfoNCE alignment of projected MF item vectors with the semantic table."""

    def __init__(self, owner: SeLLaRec):
        super().__init__()
        self.mf, self.proj = owner.mf, owner.proj
        self.semantic_copy = nn.Parameter(owner.semantic.clone())
        self.weight, self.temperature = owner.cfg.align_weight, owner.cfg.temperature

    def logits(self, batch: dict) -> torch.Tensor:
        return self.mf.logits(batch)

    def align_loss(self, items: torch.Tensor) -> torch.Tensor:
        items = torch.unique(items)
        return info_nce(self.proj(self.mf.item_emb(items)), self.semantic_copy[items], self.temperature)

    def loss(self, batch: dict) -> torch.Tensor:
        loss = self.mf.loss(batch)
        if self.weight > 0:
            loss = loss + self.weight * self.align_loss(batch["items"])
        return loss


@register("sellarec", task="ctr", config=SeLLaRecConfig)
class SeLLaRec(CoLLM):
    def __init__(self, split, cfg: SeLLaRecConfig):
        super().__init__(split, cfg)
        d_lm = self.lm.get_input_embeddings().weight.shape[1]
        self.template = SELLA_MOVIE if cfg.use_warm else COLLM_MOVIE
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 2)
            self.warm = nn.Linear(d_lm, d_lm)
        if cfg.warm_init == "identity":
            with torch.no_grad():
                self.warm.weight.copy_(torch.eye(d_lm))
                self.warm.bias.zero_()
        self.register_buffer("semantic", torch.zeros(split.n_items + 1, d_lm))

    def soft_vectors(self, batch: dict) -> dict[int, torch.Tensor]:
        out = super().soft_vectors(batch)
        if self.cfg.use_warm:
            out[self.token_ids[WARM_TOKEN]] = self.scaled(self.warm(self.semantic[batch["items"]]))
        return out

    def distil_semantics(self, log) -> None:
        texts = ["Movie: " + t for t in self.titles[1:]]
        if log:
            log(f"step 2: semantic vectors of {len(texts)} item titles from the step-1 LM")
        vecs = encode_texts(self.lm, self.tokenizer, texts, pooling="last", batch_size=self.cfg.semantic_batch_size)
        with torch.no_grad():
            self.semantic[1:] = torch.as_tensor(vecs)

    def fit_ctr(self, split, train_cfg, device, log=print) -> LMFitResult:
        c = self.cfg
        out = LMFitResult(dtype=self.dtype_info)
        out.add("step1-lora", self.fit_step1(split, train_cfg, log))
        self.distil_semantics(log)
        self.freeze_lm()
        step2 = Step2(self)
        out.add("step2-mf-align", self.fit_mf(split, train_cfg, device, log, module=step2))
        if c.proj_init == "random":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(c.seed + 3)
                for m in self.proj:
                    if isinstance(m, nn.Linear):
                        m.reset_parameters()
        extra = {} if c.train_mf and c.warm_init == "random" else {"train_mf": c.train_mf, "warm_init": c.warm_init}
        key = self.step3_key(split, {"model": "sellarec", "align_weight": c.align_weight, "temperature": c.temperature,
                                     "use_warm": c.use_warm, "proj_init": c.proj_init, **extra})
        trainable = {**({"mf": self.mf} if c.train_mf else {}), "proj": self.proj,
                     **({"warm": self.warm} if c.use_warm else {})}
        for p in self.mf.parameters():
            p.requires_grad_(c.train_mf)
        for m in trainable.values():
            for p in m.parameters():
                p.requires_grad_(True)
        res, _ = self.run_stage("sellarec-step3", key, trainable, split, c.soft_lr, c.soft_epochs, train_cfg, log, max_rows=self.cfg.soft_max_rows)
        out.add("sellarec-step3", res)
        return out
