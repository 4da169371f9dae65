"""The LM intent judge writes keep flags that SAERec's keep-list reads (plumbing, not verdict quality)."""

import json

import numpy as np
import pytest

from semcollab.methods.saerec.intents import build_library, load_keep
from semcollab.methods.saerec.lm_labels import LMLabeler, answer_margins, judge_library, judge_prompt

# items 1..4; latent 1 fires on items 1-2, latent 2 on 3-4, latent 0 is dead
IDX = np.array([[0, 0], [1, 2], [1, 2], [2, 0], [2, 0]])
VAL = np.array([[0, 0], [2.0, 0.1], [1.5, 0.1], [2.0, 0], [0.5, 0]], dtype=np.float32)
TEXTS = ["space war", "space war movie", "love story", "love drama"]
# the test tokenizer knows only a few words; "yes"/"no" are both unknown to it
ANSWERS = ("action", "drama")


def test_prompt_shows_label_and_items():
    p = judge_prompt("space  war", ["Toy Story", "Golden\nEye"], shots="")
    assert p == "Items:\n- Toy Story\n- Golden Eye\nTheme: space war\nShopping intent:"
    with pytest.raises(ValueError, match="at least one item"):
        judge_prompt("x", [])


def test_judge_writes_keep_flags_a_model_can_read(tiny_causal_lm, tmp_path):
    lib = build_library(IDX, VAL, TEXTS, 3)
    lib.lm_labels[2] = "romance"
    judge = LMLabeler(str(tiny_causal_lm), device="cpu", batch_size=1)
    verdict = judge_library(lib, TEXTS, judge, answers=ANSWERS)
    assert set(verdict) == {1, 2}  # every live intent, never the dead one
    assert all(isinstance(v, bool) for v in verdict.values())
    assert verdict == {j: lib.keep_scores[j] > 0 for j in (1, 2)}
    # greedy and batch-invariant: the same margins from padded batches
    again = LMLabeler(str(tiny_causal_lm), device="cpu", batch_size=4)
    prompts = [judge_prompt("romance", TEXTS[2:]), judge_prompt("a", TEXTS[:1])]
    np.testing.assert_allclose(answer_margins(again, prompts, ANSWERS), answer_margins(judge, prompts, ANSWERS),
                               rtol=1e-4, atol=1e-5)
    assert judge_library(build_library(IDX, VAL, TEXTS, 3), TEXTS, again, top=1, answers=ANSWERS) == {2: verdict[2]}
    # the margin threshold decides; records carry keep and its score; load_keep reads them back
    judge_library(lib, TEXTS, judge, answers=ANSWERS, margin=-np.inf)
    assert lib.keep == {1: True, 2: True}
    path = tmp_path / "intents.json"
    lib.save(path, ["a", "b", "c", "d"], TEXTS)
    recs = {r["latent"]: r for r in json.loads(path.read_text())}
    assert recs[1]["keep"] is True and isinstance(recs[2]["keep_score"], float)
    assert load_keep(path, lib.labels).tolist() == [False, True, True]
    lib.keep[1] = False
    lib.save(path, ["a", "b", "c", "d"], TEXTS)
    assert load_keep(path, lib.labels).tolist() == [False, False, True]


def test_answers_the_model_cannot_tell_apart_are_refused(tiny_causal_lm):
    judge = LMLabeler(str(tiny_causal_lm), device="cpu")
    with pytest.raises(ValueError, match="different tokens"):
        judge_library(build_library(IDX, VAL, TEXTS, 3), TEXTS, judge)  # "Yes"/"No" are both [UNK] here
