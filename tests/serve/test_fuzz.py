"""schemathesis against the app's own OpenAPI schema (in-process ASGI): no input gives a 5xx.

Every operation gets positive (schema-valid) and negative (schema-violating) cases; half of the positive
bodies get real user / item ids swapped in, so the ranking code runs, not only the validation. Bounded:
``MAX_EXAMPLES`` per operation and mode. Figures (cases, statuses, 5xx) are printed and written to
``SEMCOLLAB_FUZZ_REPORT`` when set."""

import json
import os
import random
from collections import Counter

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

from semcollab.serve import create_app  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("SEMCOLLAB_FUZZ_EXAMPLES", "25"))


def _realistic(body, rng, users, items):
    if not isinstance(body, dict) or rng.random() < 0.5:
        return body
    body = dict(body)
    if "user_id" in body:
        body["user_id"] = rng.choice(users)
    for key in ("history", "allow", "deny", "item_ids"):
        if isinstance(body.get(key), list):
            body[key] = [rng.choice(items) for _ in body[key][:20]] or [rng.choice(items)]
    if "item_id" in body:
        body["item_id"] = rng.choice(items)
    if isinstance(body.get("user_ids"), list):
        body["user_ids"] = [rng.choice(users) for _ in body["user_ids"][:20]]
    body.pop("model", None)  # one run per app: the model may be left out
    return body


@pytest.mark.parametrize("which", ["sasrec", "ctr"])
def test_no_server_errors(which, sasrec_run, ctr_run):
    run = sasrec_run if which == "sasrec" else ctr_run
    app = create_app([str(run)], max_batch=64, allow_pickle=True)
    loaded = next(iter(app.state.runs.values()))
    users = [str(u) for u in loaded.split.user_vocab.ids]
    items = [str(i) for i in loaded.split.item_vocab.ids]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    rng = random.Random(0)
    statuses, failures, cases, unsatisfiable = Counter(), [], 0, []

    def fuzz(op, mode):  # one operation in one mode (a function, so the test below binds op and mode)
        @given(op.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            nonlocal cases
            if mode == schemathesis.GenerationMode.POSITIVE:
                case.body = _realistic(case.body, rng, users, items)
            cases += 1
            try:
                status = case.call().status_code
            except Exception as exc:  # an exception escaping the app is a 500 a client would see
                status = 500
                failures.append(f"{op.label}: {type(exc).__name__}: {exc}")
            statuses[status] += 1
            if status >= 500 and len(failures) < 20:
                failures.append(f"{op.label}: {status} for {case.as_curl_command()}")

        try:
            check()
        except Unsatisfiable:  # nothing to violate (GET /healthz has no inputs): no negative cases
            unsatisfiable.append(f"{op.label} {mode.value}")

    for result in schema.get_all_operations():
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fuzz(result.ok(), mode)
    five = sum(n for s, n in statuses.items() if s >= 500)
    report = {"app": which, "cases": cases, "statuses": dict(sorted(statuses.items())), "5xx": five,
              "no_negative_cases": unsatisfiable}
    print(json.dumps(report))
    if os.environ.get("SEMCOLLAB_FUZZ_REPORT"):
        with open(os.environ["SEMCOLLAB_FUZZ_REPORT"], "a") as f:
            f.write(json.dumps(report) + "\n")
    assert cases >= 10 * MAX_EXAMPLES // 2  # it ran (every operation, both modes)
    assert five == 0, failures
    assert statuses[200] > 0  # some cases got through validation to the model
