"""Per-layer attention to collaborative soft tokens in an LM recommender (SAILRec's diagnostic).

For a sample of rows, every layer's real attention probabilities (recorded by the registered attention
function of :mod:`semcollab.methods.lm_ctr.steering`, i.e. the weights the model computes, steering included) are
reduced to: the mass the answer position puts on each kind of collaborative token (user / item / warm),
and the same averaged over the text positions that come after that kind's first token (the ones that can
see it under causal attention). Reported per layer (mean over heads and rows, and per head), for all / warm / cold rows, with
the mass a uniform attention would give as a reference (tokens of the kind / visible keys)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ...errors import ConfigError, IncompatibleRunError
from .base import LMCTRModel


def _masks(model, enc: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Kind masks over key positions, and per kind the text query positions that can see that kind (real
    tokens after its first occurrence, not collaborative themselves, not the answer position): ``(B, K, T)``."""
    keys = model.collab_key_masks(enc["input_ids"])
    any_collab = torch.zeros_like(enc["input_ids"], dtype=torch.bool)
    for m in keys.values():
        any_collab |= m
    real = enc["attention_mask"].bool()
    text = []
    for m in keys.values():
        t = (m.long().cumsum(1) > 0) & real & ~any_collab
        t[:, -1] = False  # left padding: the last column is the answer position
        text.append(t)
    return keys, torch.stack(text, 1) if text else torch.zeros_like(real)[:, None][:, :0]


@torch.no_grad()
def attention_profile(model, part, rows: np.ndarray, batch_size: int = 8) -> dict:
    """Raw per-row records for ``rows`` of ``part``: answer / text mass per layer, head and kind."""
    control = model.install_attention_control()
    model.eval()
    device = next(model.parameters()).device
    answer, text, uniform, total = [], [], [], []
    kinds = None
    for s in range(0, len(rows), batch_size):
        idx = rows[s:s + batch_size]
        batch = part.batch(idx, device)
        enc = model.encode(batch)
        keys, text_q = _masks(model, enc)
        if kinds is None:
            kinds = list(keys)
        elif list(keys) != kinds:
            raise ValueError(f"prompts hold different soft-token kinds ({list(keys)} vs {kinds})")
        control.set_keys(keys)  # the per-kind query masks follow this order (logits sets the same keys again)
        with control.recording(text_queries=text_q) as rec:
            model.logits(batch, enc=enc)
        answer.append(rec.answer.float().cpu())  # (L, B, H, K)
        text.append(rec.text.float().cpu())
        total.append(rec.total_answer.float().cpu())
        n_visible = enc["attention_mask"].sum(1).float().cpu()  # the answer position sees every real token
        uniform.append(torch.stack([keys[k].sum(1).float().cpu() / n_visible for k in kinds], -1))  # (B, K)
    return {"kinds": kinds, "answer": torch.cat(answer, 1).numpy(), "text": torch.cat(text, 1).numpy(),
            "total_answer": torch.cat(total, 1).numpy(), "uniform": torch.cat(uniform, 0).numpy()}


def summarise(raw: dict, warm: np.ndarray) -> dict:
    """Means over rows (and heads) for all / warm / cold rows."""
    out = {"kinds": raw["kinds"], "layers": int(raw["answer"].shape[0]), "heads": int(raw["answer"].shape[2]),
           "max_abs_total_minus_1": float(np.abs(raw["total_answer"] - 1).max()), "groups": {}}
    for group, sel in (("all", np.ones_like(warm)), ("warm", warm), ("cold", ~warm)):
        if not sel.any():
            continue
        g = {"rows": int(sel.sum())}
        for where in ("answer", "text"):
            a = raw[where][:, sel]  # (L, n, H, K)
            g[where] = {k: np.nanmean(a[..., j], axis=(1, 2)).round(6).tolist() for j, k in enumerate(raw["kinds"])}
            g[where + "_per_head"] = {k: np.nanmean(a[..., j], axis=1).round(6).tolist()
                                      for j, k in enumerate(raw["kinds"])}
        g["uniform"] = {k: float(raw["uniform"][sel, j].mean()) for j, k in enumerate(raw["kinds"])}
        out["groups"][group] = g
    return out


def plot_attention(report: dict, path: Path, title: str = "") -> None:
    """Layers on the x axis, one line per token kind (answer position solid, text positions dashed), warm and
    cold rows side by side; dotted: the uniform-attention reference of each kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [g for g in ("warm", "cold") if g in report["groups"]] or ["all"]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4), sharey=True, squeeze=False)
    colors = {"user": "tab:blue", "item": "tab:orange", "warm": "tab:green"}
    x = np.arange(report["layers"])
    for ax, group in zip(axes[0], groups):
        g = report["groups"][group]
        for k in report["kinds"]:
            c = colors.get(k)
            ax.plot(x, g["answer"][k], "-o", ms=3, color=c, label=f"{k} (answer pos.)")
            ax.plot(x, g["text"][k], "--", color=c, label=f"{k} (text pos., mean)")
            ax.axhline(g["uniform"][k], ls=":", color=c, lw=1)
        ax.set_title(f"{title} {group} rows ({g['rows']})".strip())
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("attention mass on collaborative tokens")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def check_attention_args(stage: str, rows: int) -> None:
    if stage not in ("valid", "test"):
        raise ConfigError(f"stage must be valid or test, got {stage!r}")
    if rows < 1:
        raise ConfigError(f"rows must be at least 1, got {rows}")


def attention_report(net, split, model_name: str, run_dir, out_dir=None, stage: str = "test", rows: int = 256,
                     seed: int = 0, batch_size: int = 8) -> dict:
    """Record a loaded LM-CTR model's per-layer attention to the collaborative tokens on ``rows`` random ``stage``
    rows, write ``attention.json`` / ``attention.png`` to ``out_dir`` (default: ``run_dir``) and return the report.
    A steered model (SAILRec with a nonzero schedule) is also recorded with the bias removed from the same weights
    (``report["unsteered"]``, ``attention_unsteered.png``): the difference is what the bias itself moves.
    :func:`semcollab.tasks.ctr.attention_diagnostic` loads a saved run and calls this."""
    check_attention_args(stage, rows)
    run_dir = Path(run_dir)
    if not isinstance(net, LMCTRModel) or type(net).soft_vectors is LMCTRModel.soft_vectors:
        raise IncompatibleRunError(f"{run_dir} is a {model_name!r} run: the attention diagnostic needs an LM model "
                                   "with collaborative soft tokens (collm, sellarec, sailrec)")
    part = split.parts[stage]
    pick = np.sort(np.random.default_rng(seed).permutation(len(part))[:rows])
    raw = attention_profile(net, part, pick, batch_size)
    if not raw["kinds"]:
        raise IncompatibleRunError(f"{run_dir}: its prompts hold no collaborative soft tokens")
    schedule = [float(b) for b in (getattr(net, "schedule", None) or [])]
    report = {"run": str(run_dir), "model": model_name, "stage": stage, "rows": len(pick), "seed": seed,
              "steering_bias": schedule, **summarise(raw, part.warm[pick])}
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    if any(schedule):  # the same trained weights without the bias: what the steering itself moves
        net.attn_control.set_bias(None)
        try:
            off = summarise(attention_profile(net, part, pick, batch_size), part.warm[pick])
        finally:
            net.attn_control.set_bias(schedule)
        report["unsteered"] = off
        plot_attention({**report, **off}, out / "attention_unsteered.png", title=f"{model_name} (bias removed)")
    (out / "attention.json").write_text(json.dumps(report, indent=1))
    plot_attention(report, out / "attention.png", title=model_name)
    return report


__all__ = ["attention_report", "check_attention_args", "attention_profile", "plot_attention", "summarise"]
