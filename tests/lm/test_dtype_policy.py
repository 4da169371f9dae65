"""The LM dtype policy (semcollab.lm.dtype): how ``auto`` reads the CPU, what a bf16 run keeps in float32, and
that the policy reaches run.json and the cache keys while float32 stays as it was."""

import json

import pytest
import torch

from semcollab.errors import ConfigError
from semcollab.lm import LoRAConfig, add_lora, load_causal_lm, yes_no_logits, yes_no_loss
from semcollab.lm.dtype import (
    CPU_BF16_ENV,
    autocast_wanted,
    cpu_bf16,
    cpu_flags,
    describe_dtype,
    keep_lora_outputs_fp32,
    resolve_dtype,
)
from semcollab.train.lm_steps import CHECKPOINT, LMTrainConfig, train_lm

from ..lm_helpers import prepare_lm

AMD_NO_BF16 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n"
AMD_AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
XEON_AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile amx_int8\n"


@pytest.fixture
def lm32(tiny_causal_lm, monkeypatch):
    """tests/lm_helpers.py's tiny LM, loaded in float32 whatever this CPU's bf16 support."""
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    return prepare_lm(tiny_causal_lm)


@pytest.fixture
def cpuinfo(tmp_path, monkeypatch):
    """Write a fake /proc/cpuinfo and point the policy at it; no environment override."""
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)

    def write(text: str):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr("semcollab.lm.dtype.CPUINFO", path)
        return path
    return write


@pytest.mark.parametrize("text, bf16", [(AMD_NO_BF16, False), (AMD_AVX512_BF16, True), (XEON_AMX, True)])
def test_auto_follows_the_cpu_flags(cpuinfo, text, bf16):
    cpuinfo(text)
    assert cpu_bf16() is bf16
    assert resolve_dtype("auto", "cpu") == (torch.bfloat16 if bf16 else torch.float32)
    assert resolve_dtype(None, "cpu") == resolve_dtype("auto", "cpu")  # the legacy None is auto
    assert resolve_dtype("auto", "cuda") == torch.bfloat16  # CUDA: bf16 whatever the CPU
    assert resolve_dtype("float32", "cuda") == torch.float32 and resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert describe_dtype("auto", "cpu") == {"dtype": "bfloat16" if bf16 else "float32", "dtype_policy": "auto",
                                             "cpu_bf16": bf16}


def test_environment_override_and_missing_cpuinfo(cpuinfo, tmp_path, monkeypatch):
    cpuinfo(XEON_AMX)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16  # an explicit policy is not overridden
    cpuinfo(AMD_NO_BF16)
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert resolve_dtype("auto", "cpu") == torch.bfloat16
    monkeypatch.setenv(CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match=CPU_BF16_ENV):
        cpu_bf16()
    monkeypatch.delenv(CPU_BF16_ENV)
    assert cpu_flags(tmp_path / "absent") is None  # not Linux: torch's capability is the hint
    monkeypatch.setattr("semcollab.lm.dtype.CPUINFO", tmp_path / "absent")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AMX")
    assert cpu_bf16() is True
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert cpu_bf16() is False


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="model_params.dtype='int8'"):
        resolve_dtype("int8", "cpu", key="model_params.dtype")


def test_fp32_path_unchanged_when_auto_resolves_to_fp32(tiny_causal_lm, monkeypatch):
    """With bf16 off, the default load is float32 and scores bit for bit what an explicit float32 load scores."""
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    model, tok = load_causal_lm(str(tiny_causal_lm))
    ref, _ = load_causal_lm(str(tiny_causal_lm), dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    yes_id, no_id = 5, 6  # any two head rows
    enc = tok(["a b c d", "e f"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = yes_no_logits(model, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
        b = yes_no_logits(ref, enc["input_ids"], enc["attention_mask"], yes_id, no_id)
    assert torch.equal(a, b)
    assert not autocast_wanted(torch.device("cpu"), model)  # no autocast over float32 weights on a CPU
    assert autocast_wanted(torch.device("cuda"), model)  # CUDA autocasts as before


def test_bf16_training_keeps_lora_and_optimizer_in_fp32(lm32, tmp_path):
    base, tok, yes_id, no_id, _ = lm32
    base.to(torch.bfloat16)  # what load_causal_lm(dtype="bfloat16") holds
    peft = add_lora(base, LoRAConfig(rank=2, alpha=4, dropout=0.0))
    assert keep_lora_outputs_fp32(peft) > 0
    trainable = {n: p for n, p in peft.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and p.dtype == torch.float32 for n, p in trainable.items())
    frozen = [p for n, p in peft.named_parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    assert autocast_wanted(torch.device("cpu"), peft)
    texts = ["one two three yes", "four five no", "six seven eight", "nine ten"]
    rows = [{"text": t, "label": i % 2} for i, t in enumerate(texts)]
    seen = []

    def collate(b):
        e = tok([r["text"] for r in b], return_tensors="pt", padding=True)
        return {**e, "label": torch.tensor([r["label"] for r in b])}

    def loss_fn(b):
        logits = yes_no_logits(peft, b["input_ids"], b["attention_mask"], yes_id, no_id)
        seen.append(logits.dtype)
        loss = yes_no_loss(logits, b["label"])
        seen.append(loss.dtype)
        return loss

    before = {n: p.detach().clone() for n, p in trainable.items()}
    cfg = LMTrainConfig(epochs=1, batch_size=2, lr=1e-2, warmup_ratio=0.0, device="cpu", progress=False)
    out = train_lm(loss_fn, {"lm": peft}, rows, [4, 3, 3, 2], collate, cfg, checkpoint_dir=tmp_path, model=peft,
                   log=None)
    assert out.steps == 2 and set(seen) == {torch.float32}  # logits and loss in float32 under bf16 autocast
    assert any(not torch.equal(before[n], p) for n, p in trainable.items())  # the adapter did train
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert all(p.dtype == torch.bfloat16 for p in frozen)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    moments = [t for s in state["optimizer"]["state"].values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert moments and all(t.dtype == torch.float32 for t in moments)
    assert all(t.dtype == torch.float32 for t in state["trainable"].values())


def test_lora_delta_is_not_rounded_to_bf16(lm32, tiny_causal_lm):
    base, *_ = lm32
    base.to(torch.bfloat16)
    peft = add_lora(base, LoRAConfig(rank=2, alpha=4, dropout=0.0))
    from peft.tuners.lora import Linear

    layer = next(m for m in peft.modules() if isinstance(m, Linear))
    with torch.no_grad():
        layer.lora_B["default"].weight.fill_(1e-4)  # a young adapter: its delta is far below a bf16 ulp
        x = torch.randn(3, layer.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
        delta = layer.lora_B["default"](layer.lora_A["default"](x.float())) * layer.scaling["default"]
        rounded = layer(x)
        n = keep_lora_outputs_fp32(peft)
        kept = layer(x)
        expected = layer.base_layer(x).float() + delta
    assert n == sum(isinstance(m, Linear) for m in peft.modules())
    assert rounded.dtype == torch.bfloat16 and kept.dtype == torch.float32
    assert torch.equal(kept, expected)
    # PEFT's own output rounds base + delta to bf16: off from the exact sum by up to half an ulp, more than the delta
    assert (rounded.float() - expected).abs().max() > delta.abs().max()
    fp32 = load_causal_lm(str(tiny_causal_lm), dtype="float32")[0]
    assert keep_lora_outputs_fp32(add_lora(fp32, LoRAConfig(rank=2))) == 0  # float32 layers are left alone


def test_ctr_run_records_the_dtype_and_keys_its_caches(tmp_path, tiny_yes_no_lm, monkeypatch):
    from semcollab.tasks.ctr import build_ctr_model, prepare_ctr, run_ctr

    from ..tasks.test_ctr import toy_ctr
    from ..tasks.test_ctr_cli import write_collm_folder

    monkeypatch.setenv(CPU_BF16_ENV, "0")
    split = prepare_ctr(toy_ctr(rows=40), history_len=3)
    fast = {"lm": str(tiny_yes_no_lm), "batch_size": 16, "max_length": 64, "lora_rank": 2}
    fp32 = build_ctr_model("tallrec", {**fast}, split)
    bf16 = build_ctr_model("tallrec", {**fast, "dtype": "bfloat16"}, split)
    assert "dtype" not in fp32.step1_key(split)  # float32 keys are those written before the policy
    assert bf16.step1_key(split) == {**fp32.step1_key(split), "dtype": "bfloat16"}
    assert next(bf16.lm.get_base_model().parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for n, p in bf16.lm.named_parameters() if "lora_" in n)
    with pytest.raises(ConfigError, match="model_params.dtype"):
        build_ctr_model("tallrec", {**fast, "dtype": "half"}, split)

    data = write_collm_folder(tmp_path / "collm", rows=(48, 16, 16))
    res = run_ctr("tallrec", "collm-ml-1m", overrides=[
        f"data.path={data}", "data.allow_pickle=true", "train.progress=false", f"output_dir={tmp_path / 'runs'}",
        f"model_params.lm={tiny_yes_no_lm}", "model_params.batch_size=16", "model_params.lora_rank=2",
        "model_params.max_length=64", "model_params.dtype=bfloat16"], log=None)
    run = json.loads((res.run_dir / "run.json").read_text())
    assert run["fit"]["dtype"] == {"dtype": "bfloat16", "dtype_policy": "bfloat16", "cpu_bf16": False}
    assert json.dumps(run).count('"dtype": "bfloat16"') >= 1


def test_embedding_and_reaemb_keys_carry_a_non_fp32_dtype():
    from semcollab.text.encoders import EncoderSpec

    spec = EncoderSpec("x", "hf", "/nonexistent")
    assert spec.key("float32") == spec.key()  # caches written before the policy keep their folder
    assert spec.key("bfloat16") != spec.key()


def test_gpu_script_refuses_without_cuda(monkeypatch, capsys, tmp_path):
    from tests.script_loader import load_script

    script = load_script("experiments/gpu/gpu_issue32.py")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert script.main(["--out", str(tmp_path / "out")]) == 2
    assert "no GPU: not run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
