"""TALLRec (Bao et al., 2023): a causal LM tuned with LoRA to answer Yes/No to "MovieList: <liked titles>.
TargetMovie: <title>." -- text only, no collaborative vectors. It is also step 1 of CoLLM and SeLLa-Rec."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import LMCTRConfig, LMCTRModel
from .prompts import TALLREC_MOVIE


@dataclass
class TALLRecConfig(LMCTRConfig):
    pass


@dataclass
class LMFitResult:
    """Per training stage: optimizer steps, seconds, tokens/s and the mean loss of the last 10 steps."""

    stages: dict = field(default_factory=dict)

    def add(self, stage: str, res) -> None:
        if hasattr(res, "losses"):  # an LMTrainResult
            self.stages[stage] = {"steps": res.steps, "seconds": round(res.seconds, 1),
                                  "tokens_per_second": round(res.tokens_per_second, 1),
                                  "final_loss": float(sum(res.losses[-10:]) / max(1, len(res.losses[-10:]))),
                                  "resumed_from_step": res.resumed_from_step, "stopped_by": res.stopped_by}
        else:  # a CTRFitResult of an embedding stage
            self.stages[stage] = {"epochs": res.epochs_run, "best_epoch": res.best_epoch,
                                  "best_valid_auc": res.best_valid_auc, "seconds": round(res.train_seconds, 1)}


class TALLRec(LMCTRModel):
    template = TALLREC_MOVIE

    @classmethod
    def from_split(cls, split, cfg: TALLRecConfig) -> TALLRec:
        return cls(split, cfg)

    def fit_ctr(self, split, train_cfg, device, log=print) -> LMFitResult:
        out = LMFitResult()
        out.add("step1-lora", self.fit_step1(split, train_cfg, log))
        return out
