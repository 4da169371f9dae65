"""Optional intent names written by a causal language model from each intent's top-activating items.

TF-IDF labels (:func:`~semcollab.explain.intents.build_library`) list words; an LM can name the theme
("crime fiction") instead. The prompt is few-shot and decoding greedy, so a label is a deterministic
function of the model and the items. Only ``top`` live intents are labelled (the densest, or a given
priority order; the CLI passes the intents with the most activation mass over training interactions, the
ones explanations show): generation costs ~1 s per intent for a 135M model on one CPU thread, and a
library has thousands.
Texts made of ids only (the S3-Rec attribute files) give an LM nothing to name; keep TF-IDF there."""

from __future__ import annotations

import numpy as np
import torch

from .intents import IntentLibrary

# two worked examples from different domains, so the model copies the format rather than the topic
SHOTS = (
    "Items:\n- Toy Story (1995). Genres: Animation Children's Comedy\n- Aladdin (1992). Genres: Animation "
    "Children's Musical\n- Lion King, The (1994). Genres: Animation Children's Musical\nTheme: animated family films\n\n"
    "Items:\n- Waterproof hiking boots, men's\n- Trekking poles, aluminium, pair\n- Hydration backpack 2L\n"
    "Theme: hiking gear\n\n"
)


def intent_prompt(item_texts: list[str], shots: str = SHOTS, max_chars: int = 120) -> str:
    """The few-shot prompt for one intent: its top items, one per line, then ``Theme:``."""
    if not item_texts:
        raise ValueError("an intent needs at least one item text to be named")
    items = "\n".join("- " + t.strip().replace("\n", " ")[:max_chars] for t in item_texts)
    return f"{shots}Items:\n{items}\nTheme:"


def clean_label(generated: str, max_words: int = 6) -> str:
    """First line of the continuation, trimmed to ``max_words`` words; ``""`` when nothing usable came out."""
    line = generated.strip().split("\n", 1)[0].strip().strip(".,;:\"'*").strip()
    return " ".join(line.split()[:max_words])


class LMLabeler:
    """Greedy few-shot naming with a local causal LM (``smollm2-135m``, a folder, or a hub id)."""

    def __init__(self, model: str = "smollm2-135m", device: str = "auto", batch_size: int = 8,
                 max_new_tokens: int = 8):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ..text.encoders import resolve_encoder

        spec = resolve_encoder(model)
        if spec.kind != "hf":
            raise ValueError(f"{model!r} is a sentence encoder, not a causal language model; name one such as "
                             "smollm2-135m")
        kw = {"gguf_file": spec.gguf_file} if spec.gguf_file else {}
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if device == "auto" else device))
        self.tokenizer = AutoTokenizer.from_pretrained(spec.path, **kw)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, **kw).to(self.device).eval()
        self.name, self.batch_size, self.max_new_tokens = spec.name, batch_size, max_new_tokens

    @torch.no_grad()
    def label(self, groups: list[list[str]]) -> list[str]:
        """One label per group of item texts (``""`` where the model produced nothing usable)."""
        prompts = [intent_prompt(g) for g in groups]
        order = np.argsort([len(p) for p in prompts], kind="stable")  # similar lengths share a batch
        out: list[str] = [""] * len(prompts)
        for s in range(0, len(order), self.batch_size):
            idx = order[s:s + self.batch_size]
            enc = self.tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True).to(self.device)
            gen = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
            for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:]):
                out[i] = clean_label(self.tokenizer.decode(row, skip_special_tokens=True))
        return out


def label_library(lib: IntentLibrary, texts: list[str], labeler: LMLabeler, top: int = 50,
                  n_items: int = 5, priority: np.ndarray | None = None) -> dict[int, str]:
    """LM labels for ``top`` live intents, stored in ``lib.lm_labels`` and returned.

    ``priority``: latent ids in the order to label them (e.g. by activation mass over training interactions,
    the intents users' explanations show most); by default the densest intents come first."""
    order = np.argsort(-lib.density, kind="stable") if priority is None else np.asarray(priority)
    live = [int(j) for j in order if lib.density[j] > 0][:top]
    if not live:
        raise ValueError("the intent library has no live latents to label")
    names = labeler.label([[texts[i - 1] for i in lib.top_items[j][:n_items]] for j in live])
    lib.lm_labels.update({j: n for j, n in zip(live, names) if n})
    return {j: lib.lm_labels[j] for j in live if j in lib.lm_labels}
