"""Command line: ``semcollab COMMAND``, each command a thin call of the Python API.

Ranking: train, evaluate, compare, quickstart, recommend. Data: data prepare, embed. Results: table, report,
diagnose. SAERec: intents, branch-stats. CTR: ctr train, ctr evaluate, ctr attention, ctr table. ReaEmb: reaemb
train, reaemb table, reaemb bench-kv. Models: models, models fetch. Serving: serve.

Any extra ``--section.key=value`` argument overrides the config (``--train.epochs=5``)."""

import typer

from . import data, diagnose, ranking, reaemb, report, saerec, serve
from .common import EXTRA
from .ctr import ctr_app
from .models import models_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
# the order of `semcollab --help`: commands as listed here, then the groups
app.command(context_settings=EXTRA)(ranking.train)
app.command(context_settings=EXTRA)(ranking.evaluate)
app.command(context_settings=EXTRA)(ranking.compare)
app.command()(report.table)
app.command(context_settings=EXTRA)(ranking.quickstart)
app.command(context_settings=EXTRA)(data.embed)
app.command("diagnose")(diagnose.diagnose_cmd)
app.command(context_settings=EXTRA)(saerec.intents)
app.command("branch-stats")(saerec.branch_stats)
app.command(context_settings=EXTRA)(ranking.recommend)
app.command("report")(report.report)
app.command("serve")(serve.serve_command)
app.add_typer(data.data_app, name="data")
app.add_typer(ctr_app, name="ctr")
app.add_typer(models_app, name="models")
app.add_typer(reaemb.reaemb_app, name="reaemb")


def main() -> None:  # pragma: no cover
    app()


__all__ = ["app", "main"]
