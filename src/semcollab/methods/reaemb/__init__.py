"""ReaEmb: an LM that "thinks" one latent token before it embeds an item, trained in two stages and read out as
an item table for the ID models. Files: ``config`` (every setting, once), ``encoder`` (the thought passes),
``objectives`` (the stage losses and rewards), ``stages`` (training on an encoder), ``run_folder`` (what a run
folder holds), ``pipeline`` (a dataset end to end) and ``table`` (item tables and the KV-reuse benchmark)."""

from ...errors import ReaEmbIncomplete
from .config import (
    DEFAULT_PROMPT,
    ReaEmbConfig,
    ReaEmbPipelineConfig,
    Stage1Config,
    Stage2Config,
    load_pipeline_config,
    run_dir_of,
)
from .encoder import (
    MODES,
    THOUGHT_TOKEN,
    ReaEmbEncoder,
    ThoughtAttention,
    add_thought_token,
    embedding_rms,
    freeze_lm,
    generate_table,
    rotary,
)
from .objectives import (
    Candidates,
    clipped_policy_loss,
    co_occurrence_candidates,
    gaussian_log_prob,
    group_advantage,
    lrcl_loss,
    rank_reward,
    rollout_sigma,
)
from .pipeline import STAGES, ReaEmbTrainResult, build_encoder, stage2_candidates, train_reaemb
from .run_folder import RunData, lm_identity, load_data, peak_memory, stage_state
from .stages import Stage2Result, train_stage1, train_stage2
from .table import TABLE_STAGES, TABLE_VERSION, kv_reuse_benchmark, reaemb_table, table_key

__all__ = [
    "DEFAULT_PROMPT", "MODES", "STAGES", "TABLE_STAGES", "TABLE_VERSION", "THOUGHT_TOKEN",
    "Candidates", "ReaEmbConfig", "ReaEmbEncoder", "ReaEmbIncomplete", "ReaEmbPipelineConfig", "ReaEmbTrainResult",
    "RunData", "Stage1Config", "Stage2Config", "Stage2Result", "ThoughtAttention",
    "add_thought_token", "build_encoder", "clipped_policy_loss", "co_occurrence_candidates", "embedding_rms",
    "freeze_lm", "gaussian_log_prob", "generate_table", "group_advantage", "kv_reuse_benchmark", "lm_identity",
    "load_data", "load_pipeline_config", "lrcl_loss", "peak_memory", "rank_reward", "reaemb_table", "rollout_sigma",
    "rotary", "run_dir_of", "stage2_candidates", "stage_state", "table_key", "train_reaemb", "train_stage1",
    "train_stage2",
]
