"""TALLRec (Bao et al., 2023): a causal LM tuned with LoRA to answer Yes/No to "MovieList: <liked titles>.
TargetMovie: <title>." -- text only, no collaborative vectors. It is also step 1 of CoLLM and SeLLa-Rec; its
schedule (step 1 alone) is :meth:`LMCTRModel.fit_ctr`'s default."""

from __future__ import annotations

from dataclasses import dataclass

from ...registry import register
from .base import LMCTRConfig, LMCTRModel
from .prompts import TALLREC_MOVIE


@dataclass
class TALLRecConfig(LMCTRConfig):
    pass


@register("tallrec", task="ctr", config=TALLRecConfig)
class TALLRec(LMCTRModel):
    template = TALLREC_MOVIE
