"""The ML-1M movie prompts of the LM-CTR methods (TALLRec, SeLLa-Rec); the template machinery and the
soft-token names are generic and live in :mod:`semcollab.lm.prompts`."""

from __future__ import annotations

from ...lm.prompts import PromptTemplate

# SeLLa-Rec / CoLLM ML-1M prompts (step 1 without soft tokens, step 3 with them)
TALLREC_MOVIE = PromptTemplate("MovieList: {history}. TargetMovie: {title}.")
SELLA_MOVIE = PromptTemplate("MovieList: {history}. The user's feature is <User_ID>. The target movie's feature is "
                             "<Item_ID>, <Warm_ID>. TargetMovie: {title}.")

__all__ = ["SELLA_MOVIE", "TALLREC_MOVIE"]
