import json

import numpy as np
import pytest

from semcollab.methods.saerec.intents import build_library
from semcollab.methods.saerec.lm_labels import LMLabeler, clean_label, intent_prompt, label_library


def test_prompt_lists_the_items_and_ends_with_the_question():
    p = intent_prompt(["Toy Story (1995)", "Golden\nEye"], shots="")
    assert p == "Items:\n- Toy Story (1995)\n- Golden Eye\nTheme:"
    with pytest.raises(ValueError, match="at least one item"):
        intent_prompt([])


@pytest.mark.parametrize("raw, want", [(" crime fiction\n\nItems:\n- The", "crime fiction"),
                                       ("**space war**.", "space war"), ("\n\n", ""),
                                       ("a b c d e f g h", "a b c d e f")])
def test_clean_label_keeps_the_first_line(raw, want):
    assert clean_label(raw) == want


def test_labeler_names_the_densest_live_intents(tiny_causal_lm):
    # items 1..4; latent 1 fires on items 1-2, latent 2 on 3-4 (denser by one item), latent 0 is dead
    idx = np.array([[0, 0], [1, 2], [1, 2], [2, 0], [2, 0]])
    val = np.array([[0, 0], [2.0, 0.1], [1.5, 0.1], [2.0, 0], [0.5, 0]], dtype=np.float32)
    texts = ["space war", "space war movie", "love story", "love drama"]
    lib = build_library(idx, val, texts, 3)
    labeler = LMLabeler(str(tiny_causal_lm), device="cpu", batch_size=1, max_new_tokens=3)
    got = label_library(lib, texts, labeler, top=1)
    assert list(got) == [2]  # only the densest live intent, and never the dead one
    assert got[2] and len(got[2].split()) <= 3
    again = LMLabeler(str(tiny_causal_lm), device="cpu", batch_size=4, max_new_tokens=3)
    assert label_library(build_library(idx, val, texts, 3), texts, again, top=1) == got  # greedy, batch-invariant
    first = label_library(build_library(idx, val, texts, 3), texts, again, top=1, priority=np.array([0, 1, 2]))
    assert list(first) == [1]  # a given order is followed, dead latents (0) skipped
    rec = {r["latent"]: r for r in lib.to_records()}
    assert rec[2]["lm_label"] == got[2] and "lm_label" not in rec[1]
    json.dumps(lib.to_records())


def test_sentence_encoders_are_refused(tmp_path):
    (tmp_path / "modules.json").write_text("[]")
    with pytest.raises(ValueError, match="not a causal language model"):
        LMLabeler(str(tmp_path))
