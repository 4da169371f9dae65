"""run.json's ``hardware`` names the CPU model: s/epoch figures are only comparable on one CPU."""
import platform

import torch

from semcollab.runs import record


def test_hardware_names_the_cpu_model(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(record, "cpu_model", lambda: "Intel(R) Xeon(R) Processor")
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert record.hardware() == "CPU (Intel(R) Xeon(R) Processor, x86_64, 3 threads)"


def test_hardware_without_a_model_name_says_the_architecture_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(record, "cpu_model", lambda: "aarch64")  # no "model name" line: platform's answer
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert record.hardware() == "CPU (aarch64, 1 threads)"


def test_cpu_model_on_this_machine_is_not_empty():
    assert record.cpu_model().strip()
