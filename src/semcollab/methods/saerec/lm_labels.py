"""Optional intent names written by a causal language model from each intent's top-activating items.

TF-IDF labels (:func:`~semcollab.methods.saerec.intents.build_library`) list words; an LM can name the theme
("crime fiction") instead. The prompt is few-shot and decoding greedy, so a label is a deterministic
function of the model and the items. Only ``top`` live intents are labelled (the densest, or a given
priority order; the CLI passes the intents with the most activation mass over training interactions, the
ones explanations show): generation costs ~1 s per intent for a 135M model on one CPU thread, and a
library has thousands.
Texts made of ids only (the S3-Rec attribute files) give an LM nothing to name; keep TF-IDF there.

:func:`judge_library` asks the same kind of model whether an intent (its label and top items) is a
shopping/recommendation intent, as the SAERec authors filter their library; the verdict is the sign of
the next-token logit margin between two answer words (few-shot, one forward pass, no sampling) and is
stored as ``keep`` in the library's records, which SAERec's ``model_params.intents_file`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...config import resolve_device
from ...hub.models import MODELS
from ...lm.load import load_causal_lm
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
        sentence_encoder = model in MODELS and MODELS[model].kind != "causal-lm"
        if sentence_encoder or (Path(model).expanduser() / "modules.json").is_file():
            raise ValueError(f"{model!r} is a sentence encoder, not a causal language model; name one such as "
                             "smollm2-135m")
        self.device = resolve_device(device, key="device")
        # left padding: generation continues from the right end of every row
        self.model, self.tokenizer = load_causal_lm(model, device=self.device)
        self.name, self.batch_size, self.max_new_tokens = str(model), batch_size, max_new_tokens

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


# --------------------------------------------------------------------------------------- intent judge
# one kept and one refused example, so the model sees both answers in the expected format
JUDGE_SHOTS = (
    "Does the group of products describe a shopping intent, a need or taste a shopper could act on?\n\n"
    "Items:\n- Waterproof hiking boots, men's\n- Trekking poles, aluminium, pair\n- Hydration backpack 2L\n"
    "Theme: hiking gear\nShopping intent: Yes\n\n"
    "Items:\n- Item 10432\n- Product, new, 2009\n- Misc. item (see description)\n"
    "Theme: numbers and codes\nShopping intent: No\n\n"
)


def judge_prompt(label: str, item_texts: list[str], shots: str = JUDGE_SHOTS, max_chars: int = 120) -> str:
    """The few-shot yes/no prompt for one intent: its top items and label, then ``Shopping intent:``."""
    if not item_texts:
        raise ValueError("an intent needs at least one item text to be judged")
    items = "\n".join("- " + t.strip().replace("\n", " ")[:max_chars] for t in item_texts)
    label = " ".join(label.split()) or "(no label)"
    return f"{shots}Items:\n{items}\nTheme: {label}\nShopping intent:"


@torch.no_grad()
def answer_margins(labeler: LMLabeler, prompts: list[str], answers: tuple[str, str] = ("Yes", "No")) -> np.ndarray:
    """Next-token logit of ``" " + answers[0]`` minus that of ``" " + answers[1]`` after each prompt.

    Left-padded batches with explicit position ids, so a prompt's margin does not depend on its batch."""
    tok = labeler.tokenizer
    ids = [tok(" " + a, add_special_tokens=False)["input_ids"] for a in answers]
    if any(not i for i in ids) or ids[0][0] == ids[1][0]:
        raise ValueError(f"the answers {answers!r} must start with different tokens of this model's vocabulary")
    yes, no = ids[0][0], ids[1][0]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out = np.zeros(len(prompts), dtype=np.float32)
    for s in range(0, len(order), labeler.batch_size):
        idx = order[s:s + labeler.batch_size]
        enc = tok([prompts[i] for i in idx], return_tensors="pt", padding=True).to(labeler.device)
        pos = (enc["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = labeler.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], position_ids=pos,
                               logits_to_keep=1).logits[:, -1].float()
        out[idx] = (logits[:, yes] - logits[:, no]).cpu().numpy()
    return out


def judge_library(lib: IntentLibrary, texts: list[str], labeler: LMLabeler, top: int | None = None,
                  n_items: int = 5, priority: np.ndarray | None = None, answers: tuple[str, str] = ("Yes", "No"),
                  margin: float = 0.0) -> dict[int, bool]:
    """Ask ``labeler``'s causal LM whether each live intent is a shopping intent; store ``lib.keep`` (and the
    logit margins in ``lib.keep_scores``) and return ``{latent: keep}`` for the judged intents.

    The label shown is the LM label when there is one, else the TF-IDF label; ``texts[i - 1]`` is item i's
    text. ``top``: judge only the first ``top`` live intents of ``priority`` (default: densest first);
    ``None`` judges every live intent (one forward pass each; unjudged intents count as not kept when a
    model reads the file). An intent is kept when logit(answers[0]) - logit(answers[1]) > ``margin``."""
    order = np.argsort(-lib.density, kind="stable") if priority is None else np.asarray(priority)
    live = [int(j) for j in order if lib.density[j] > 0]
    live = live if top is None else live[:top]
    if not live:
        raise ValueError("the intent library has no live latents to judge")
    prompts = [judge_prompt(lib.lm_labels.get(j) or lib.labels[j], [texts[i - 1] for i in lib.top_items[j][:n_items]])
               for j in live]
    scores = answer_margins(labeler, prompts, answers)
    verdict = {j: bool(m > margin) for j, m in zip(live, scores)}
    lib.keep.update(verdict)
    lib.keep_scores.update({j: float(m) for j, m in zip(live, scores)})
    return verdict
