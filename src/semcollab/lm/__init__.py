"""Generic causal-LM machinery: load causal LMs, LoRA through PEFT, prompts with soft tokens, two-row yes/no
scoring, a resumable training loop and hidden-state text embeddings. What one method alone uses lives in its
folder (SAILRec's attention steering and the movie prompts: :mod:`semcollab.methods.lm_ctr`). Heavy imports
(transformers, peft) are lazy."""

from .batching import length_bucketed_batches, longest_first_batches
from .body import body_hidden, last_token_index, lm_body, position_ids_from_mask, unwrap_peft
from .hidden import encode_texts
from .load import load_causal_lm, set_padding
from .lora import LoRAConfig, add_lora, load_adapter, save_adapter
from .prompts import (
                        ITEM_TOKEN,
                        SOFT_TOKENS,
                        USER_TOKEN,
                        WARM_TOKEN,
                        PromptTemplate,
                        add_special_tokens,
                        token_positions,
)
from .scoring import (
                        answer_token_ids,
                        score_prompts,
                        yes_no_logits,
                        yes_no_logits_full_head,
                        yes_no_loss,
                        yes_probability,
)
from .soft_tokens import embed_with_soft_tokens

__all__ = [
    "ITEM_TOKEN", "SOFT_TOKENS", "USER_TOKEN", "WARM_TOKEN",
    "LoRAConfig", "PromptTemplate",
    "add_lora", "add_special_tokens", "answer_token_ids", "body_hidden", "embed_with_soft_tokens", "encode_texts",
    "last_token_index", "length_bucketed_batches", "lm_body", "longest_first_batches", "load_adapter", "load_causal_lm",
    "position_ids_from_mask", "save_adapter", "score_prompts", "set_padding", "token_positions", 
    "unwrap_peft", "yes_no_logits", "yes_no_logits_full_head", "yes_no_loss", "yes_probability",
]
