"""``--nproc 0`` is a usage error (exit 2, the option named), never a traceback, on every command that has it."""

import pytest
from typer.testing import CliRunner

from semcollab.cli import app
from semcollab.distributed import launch
from semcollab.errors import DistributedError

COMMANDS = [
    ["train", "--model", "sasrec"],
    ["ctr", "train", "--model", "tallrec"],
    ["ctr", "evaluate", "some-run"],
    ["embed", "--dataset", "ml-100k"],
    ["reaemb", "table", "--plain"],
    ["reaemb", "train", "--dataset", "s3rec:Beauty"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_nproc_below_one_is_a_usage_error(argv, value):
    r = CliRunner().invoke(app, [*argv, "--nproc", value])
    assert r.exit_code == 2, r.output
    assert isinstance(r.exception, SystemExit)  # not a ZeroDivisionError or any other traceback
    assert "Traceback" not in r.output
    assert "Invalid value for '--nproc'" in r.output, r.output  # the option exists and its range is checked


def test_launch_checks_nproc_before_dividing_the_cores():
    with pytest.raises(DistributedError, match="--nproc must be at least 1, got 0"):
        launch(0, ["train"])
