import pytest
import torch


def prepare_lm(path):
    """The tiny random Llama with 'yes'/'no' words (random, distinct head rows) and the soft tokens."""
    from semcollab.lm import add_special_tokens, answer_token_ids, load_causal_lm

    model, tok = load_causal_lm(str(path))
    tok.add_tokens(["yes", "no"])
    ids = add_special_tokens(tok, model)  # new rows start at the mean: identical for yes and no
    yes_id, no_id = answer_token_ids(tok)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[[yes_id, no_id]] = torch.randn(2, head.shape[1], generator=g) * 0.2
    return model, tok, yes_id, no_id, ids


@pytest.fixture  # registered for every test folder by tests/conftest.py
def lm(tiny_causal_lm):
    return prepare_lm(tiny_causal_lm)


def randomize_lora(model, seed=0):
    """LoRA's B starts at zero (adapter = identity); give it weights so the adapter changes outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
