"""Request and response models of the serving API (their constraints are the published OpenAPI schema)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000
ItemRef = str  # a raw item id (or, in ``history``, an item title)
_ID = {"min_length": 1, "max_length": 200}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RecommendRequest(Strict):
    model: str | None = Field(None, description="a run name from /v1/models; optional when one run is loaded", **_ID)
    user_id: str | None = Field(None, description="a known user (their whole history is used)", **_ID)
    history: list[str] | None = Field(None, min_length=1, max_length=500,
                                      description="a new user's items, oldest first: item ids or exact titles")
    k: int = Field(10, ge=1, le=MAX_K, description="how many items (at most the catalogue size)")
    exclude_seen: bool = Field(True, description="leave out the items of the user's history")
    allow: list[str] | None = Field(None, min_length=1, max_length=100_000, description="rank only these item ids")
    deny: list[str] | None = Field(None, max_length=100_000, description="never return these item ids")


class ScoredItem(BaseModel):
    id: str
    title: str | None
    score: float


class Item(BaseModel):
    id: str
    title: str | None


class Intent(BaseModel):
    kind: str
    latent: int
    label: str
    contribution: float
    attention: float


class RecommendResponse(BaseModel):
    model: str
    version: str = Field(description="run folder name @ first 12 hex digits of the data fingerprint")
    user_id: str | None
    history: list[Item] = Field(description="the most recent history items (at most 20)")
    items: list[ScoredItem]
    note: str | None = None


class BatchRequest(Strict):
    model: str | None = Field(None, **_ID)
    user_ids: list[str] | None = Field(None, min_length=1, description="known users, each ranked with k / exclude_seen")
    requests: list[RecommendRequest] | None = Field(None, min_length=1, description="full requests (their own k ...)")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    include_history: bool = Field(False, description="return each user's recent history too (off: smaller, faster)")


class BatchResponse(BaseModel):
    model: str
    version: str
    results: list[RecommendResponse]


class SimilarRequest(Strict):
    model: str | None = Field(None, **_ID)
    item_id: str = Field(..., **_ID)
    k: int = Field(10, ge=1, le=MAX_K)
    embedding: str = Field("auto", pattern="^(auto|id|semantic)$",
                           description="auto: semantic (text) embeddings when the run has them, else ID embeddings")


class SimilarResponse(BaseModel):
    model: str
    version: str
    item: Item
    embedding: str
    items: list[ScoredItem]


class ExplainedItem(ScoredItem):
    gate: dict[str, float]
    sequence_term: float
    intents: list[Intent]


class ExplainRequest(RecommendRequest):
    k: int = Field(5, ge=1, le=50)
    n_intents: int = Field(3, ge=1, le=20)


class ExplainResponse(BaseModel):
    model: str
    version: str
    user_id: str | None
    history: list[Item]
    items: list[ExplainedItem]


class ScoreRequest(Strict):
    model: str | None = Field(None, **_ID)
    user_id: str = Field(..., **_ID)
    item_ids: list[str] = Field(..., min_length=1, max_length=1000)
    history: list[str] | None = Field(None, max_length=500, description="item ids, oldest first; default: the "
                                      "history of the user's most recent row in the data")


class ScoreResponse(BaseModel):
    model: str
    version: str
    user_id: str
    scores: list[dict[str, str | float]] = Field(description="[{id, probability}] in request order")


class ModelInfo(BaseModel):
    name: str
    task: str = Field(description="rank or ctr")
    model: str
    dataset: str
    n_items: int
    n_users: int
    data_fingerprint: str | None
    version: str
    factored: bool = Field(description="served by one matmul against a precomputed item matrix")
    explain: bool
    test_metrics: dict


class ModelsResponse(BaseModel):
    models: list[ModelInfo]


class ItemsResponse(BaseModel):
    model: str
    items: list[Item]


class UsersResponse(BaseModel):
    model: str
    users: list[str]
    total: int
