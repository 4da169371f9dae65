"""Explanations: SAE intents with names, and why a recommendation was made."""

from __future__ import annotations

import numpy as np
import torch

from .intents import (
    IntentLibrary,
    build_library,
    item_activations,
    latent_idf,
    personal_intents,
    public_intents,
)

__all__ = ["IntentLibrary", "build_library", "explain_recommendations", "item_activations", "latent_idf",
           "personal_intents", "public_intents", "user_history"]


def user_history(split, raw_user: str, stage: str = "all") -> np.ndarray:
    """A user's time-ordered item indices: everything known (``all``) or what preceded ``valid``/``test``."""
    u = split.user_vocab.encode(raw_user)
    frames = {"valid": [split.train], "test": [split.train, split.valid],
              "all": [split.train, split.valid, split.test]}
    if stage not in frames:
        raise ValueError(f"stage must be all, valid or test, got {stage!r}")
    seq = split._sequences(frames[stage])[u]
    if len(seq) == 0:
        raise ValueError(f"user {raw_user!r} has no history before {stage}")
    return seq


@torch.no_grad()
def explain_recommendations(model, split, raw_user: str, k: int = 10, stage: str = "all", n_intents: int = 3,
                            library: IntentLibrary | None = None, intents_file=None) -> dict:
    """Top-``k`` items for a user (history masked) and, for intent models, the intents behind each.

    ``intents_file``: a saved ``intents.json`` of the same SAE whose LM labels are shown beside TF-IDF ones."""
    hist = user_history(split, raw_user, stage)
    seq = torch.as_tensor(np.array(hist[-(model.max_len or len(hist)):]))[None]
    u = torch.as_tensor([split.user_vocab.encode(raw_user)])
    model.eval()
    scores = model.score(u, seq)[0]
    scores[0] = -torch.inf
    scores[torch.as_tensor(np.unique(hist))] = -torch.inf
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    available = int(torch.isfinite(scores).sum())  # items the user has not interacted with
    top = scores.topk(min(k, available))
    # the texts the model's intents were built from (its own template, if it has one)
    # (None: the dataset's default template, as item_embeddings used)
    texts = split.render_texts(getattr(getattr(model, "cfg", None), "template", None))
    if hasattr(model, "explain") and library is None:
        library = build_library(model.act_idx.numpy(), model.act_val.numpy(), texts, model.n_latents)
    if intents_file is not None:
        if library is None:
            raise ValueError("an intents file only applies to intent models (saerec)")
        library.adopt_lm_labels(intents_file)
    recs = []
    for s, i in zip(top.values.tolist(), top.indices.tolist()):
        rec = {"item": split.item_vocab.decode(i), "text": texts[i - 1], "score": s}
        if hasattr(model, "explain"):
            ex = model.explain(seq, i)
            rec["gate"] = ex["gate"]
            rec["sequence_term"] = ex["sequence_term"]
            rec["intents"] = [{**d, "label": library.labels[d["latent"]],
                               **({"lm_label": library.lm_labels[d["latent"]]} if d["latent"] in library.lm_labels
                                  else {})} for d in ex["intents"][:n_intents]]
        recs.append(rec)
    out = {"user": raw_user, "history": [texts[i - 1] for i in hist[-5:]], "recommendations": recs}
    if available < k:
        out["note"] = (f"only {available} items are left that user {raw_user!r} has not interacted with; "
                       f"showing {available} of the {k} asked for")
    return out
