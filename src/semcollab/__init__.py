"""semcollab: recommendation that combines semantic (language-model) and collaborative knowledge.

The whole public API, for every task (ranking, CTR, item tables)::

    import semcollab
    res = semcollab.run(model="sasrec", dataset="ml-100k")      # train, evaluate, save: res.metrics, res.run_dir
    run = semcollab.load_run(res.run_dir)                         # any saved run: .score(user), .recommend(user, k)
    semcollab.evaluate(res.run_dir, "test")                       # its metrics, computed again
    semcollab.recommend(res.run_dir, user="1", k=10)
    semcollab.list_models()                                       # every model run() can train
    @semcollab.register("my-model", task="ctr", config=MyConfig)  # add one (see semcollab.registry)

The names are imported on first use, so ``import semcollab`` stays cheap (no torch)."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {"run": "pipeline", "evaluate": "pipeline", "recommend": "pipeline", "load_run": "pipeline",
           "list_models": "pipeline", "Run": "pipeline", "RunResult": "pipeline", "register": "registry",
           "register_source": "registry"}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'semcollab' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
