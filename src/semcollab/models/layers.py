"""Transformer pieces shared by the self-attentive sequence models (nanoGPT-style, pre-norm)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class TransformerBlock(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float, attn_dropout: float, ffn_mult: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, attn_dropout)
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_mult * hidden), nn.GELU(), nn.Linear(ffn_mult * hidden, hidden))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), mask))
        return x + self.drop(self.ffn(self.ln2(x)))


def attention_mask(seqs: torch.Tensor, causal: bool) -> torch.Tensor:
    """Boolean ``(B, 1, L, L)`` mask (True = may attend): never to padding keys, optionally causal.

    A padding query with no allowed key is let attend to itself, so softmax never sees an all-masked
    row (which would give NaN); padding outputs are never read."""
    B, L = seqs.shape
    keys = (seqs > 0)[:, None, None, :]
    mask = keys.expand(B, 1, L, L)
    if causal:
        mask = mask & torch.ones(L, L, dtype=torch.bool, device=seqs.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=seqs.device)
    return mask | (eye & ~mask.any(-1, keepdim=True))
