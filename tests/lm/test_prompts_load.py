import pytest
import torch

from semcollab.lm import (
    ITEM_TOKEN,
    USER_TOKEN,
    PromptTemplate,
    add_special_tokens,
    load_causal_lm,
    token_positions,
)
from semcollab.methods.lm_ctr.prompts import SELLA_MOVIE


def test_load_sets_left_padding_and_eval(tiny_causal_lm):
    model, tok = load_causal_lm(str(tiny_causal_lm))
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert model.config.pad_token_id == tok.pad_token_id and not model.training


def test_load_missing_model_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_causal_lm(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        load_causal_lm(str(tmp_path / "empty"))


def test_template_slots_and_missing_slot():
    t = PromptTemplate("MovieList: {history}. TargetMovie: {title}", answer_lead=" Answer:")
    assert t.slots() == ["history", "title"]
    assert t.render(history="a, b", title="c") == "MovieList: a, b. TargetMovie: c Answer:"
    with pytest.raises(KeyError, match="title"):
        t.render(history="a")
    with pytest.raises(ValueError, match="positional"):
        PromptTemplate("x {} y").slots()
    assert USER_TOKEN in SELLA_MOVIE.render(history="h", title="t")


def test_special_tokens_single_ids_deterministic_rows(lm, tiny_causal_lm):
    model, tok, _, _, ids = lm
    assert len(set(ids.values())) == 3 and model.get_input_embeddings().weight.shape[0] == len(tok)
    # a second load adds the same ids with the same rows (adapters then need not store embeddings)
    model2, tok2 = load_causal_lm(str(tiny_causal_lm))
    tok2.add_tokens(["yes", "no"])
    assert add_special_tokens(tok2, model2) == ids
    assert torch.equal(model.get_input_embeddings().weight, model2.get_input_embeddings().weight)
    enc = tok([f"toy story {USER_TOKEN} and {ITEM_TOKEN}", f"{USER_TOKEN} {ITEM_TOKEN} drama"], padding=True,
              return_tensors="pt")
    pos = token_positions(enc["input_ids"], ids[USER_TOKEN])
    assert (enc["input_ids"][torch.arange(2), pos] == ids[USER_TOKEN]).all()
