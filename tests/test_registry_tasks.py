"""One model namespace per task: ``mf`` is MF-BPR (a ranking alias) and the CTR click model, without a clash."""

import pytest

from semcollab import registry
from semcollab.errors import UnknownNameError


def test_a_name_two_tasks_share_resolves_by_task():
    assert registry.model_entry("mf").name == "mf-bpr"  # `semcollab train --model mf` always meant MF-BPR
    assert registry.model_entry("mf", task="ranking").name == "mf-bpr"
    ctr = registry.model_entry("mf", task="ctr")
    assert (ctr.name, ctr.task, ctr.cls.__name__) == ("mf", "ctr", "MFCTR")
    assert "mf" in registry.list_models("ctr") and "mf" not in registry.list_models("ranking")
    assert "mf-bpr" in registry.list_models() and "mf" in registry.list_models()


def test_a_model_of_another_task_is_named_as_such():
    with pytest.raises(UnknownNameError, match="is a ctr model, not a ranking one"):
        registry.model_entry("collm", task="ranking")
    with pytest.raises(UnknownNameError, match="unknown model 'nope'"):
        registry.model_entry("nope", task="ctr")


def test_every_builtin_model_of_the_three_tasks_is_registered():
    assert set(registry.list_models("ranking")) >= {"pop", "mf-bpr", "sasrec", "gru4rec", "bert4rec", "semantic",
                                                     "fusion", "saerec"}
    assert set(registry.list_models("ctr")) == {"mf", "sasrec-ctr", "tallrec", "collm", "sellarec", "sailrec"}
    assert registry.list_models("item-table") == ["reaemb"]
