import pytest
import torch

from semcollab.lm import LoRAConfig, add_lora, load_adapter, load_causal_lm, save_adapter

from ..lm_helpers import prepare_lm, randomize_lora


@pytest.mark.parametrize("kw,key", [({"rank": 0}, "rank"), ({"alpha": -1}, "alpha"), ({"dropout": 1.0}, "dropout"),
                                    ({"target_modules": []}, "target_modules"),
                                    ({"target_modules": "attention"}, "target_modules"), ({"bias": "x"}, "bias")])
def test_config_errors_name_key(kw, key):
    with pytest.raises(ValueError, match=f"lora.{key}"):
        LoRAConfig(**kw).validate()


def test_unknown_target_module_is_clear(lm):
    model = lm[0]
    with pytest.raises(ValueError, match="target_modules"):
        add_lora(model, LoRAConfig(target_modules=["no_such_proj"]))


def test_only_lora_and_extra_params_train(lm):
    model = lm[0]
    peft = add_lora(model, LoRAConfig(rank=2))
    trainable = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # all-linear covers attention and MLP projections, not the LM head
    covered = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= covered
    assert not any("lm_head" in n for n in trainable)


def test_adapter_round_trip(lm, tiny_causal_lm, tmp_path):
    model, tok, *_ = lm
    enc = tok(["toy story drama", "the golden eye <User_ID>"], padding=True, return_tensors="pt")
    peft = add_lora(model, LoRAConfig(rank=4, dropout=0.0))
    randomize_lora(peft)
    with torch.no_grad():
        ref = peft(**enc).logits
    save_adapter(peft, tmp_path / "adapter")
    save_adapter(peft, tmp_path / "adapter")  # replacing an existing adapter works
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)  # adapter only: no embedding matrix
    base, tok2, *_ = prepare_lm(tiny_causal_lm)  # the same base model, rebuilt
    loaded = load_adapter(base, tmp_path / "adapter")
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(**enc).logits, ref, atol=0, rtol=0)
    base3, _ = load_causal_lm(str(tiny_causal_lm))
    base3.resize_token_embeddings(len(tok2), mean_resizing=False)
    trainable = load_adapter(base3, tmp_path / "adapter", trainable=True)
    assert any(p.requires_grad for p in trainable.parameters())
    with pytest.raises(FileNotFoundError, match="adapter_config"):
        load_adapter(base3, tmp_path / "missing")
