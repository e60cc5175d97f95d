"""benchmarks/profile_step.py on the CPU: one `aekit train` run timed by part and profiled by kind."""

from __future__ import annotations

import json

import pytest
import torch
from _benchmarks import load_benchmark


@pytest.fixture(scope="module")
def profile_step():
    return load_benchmark("profile_step")


def test_op_names_fall_into_the_kinds_a_reader_expects(profile_step):
    kind = profile_step.kind_of
    assert kind("aten::convolution_backward") == kind("aten::mkldnn_convolution") == "convolution"
    assert kind("aten::max_pool2d_with_indices_backward") == "pooling"
    assert kind("aten::upsample_nearest2d") == "upsampling"
    assert kind("cudaStreamSynchronize") == profile_step.WAITS
    assert kind("cudaLaunchKernel") == "CUDA runtime calls (launches, copies)"
    assert kind("aten::_local_scalar_dense") == "reading numbers (.item)"
    assert kind("Optimizer.step#AdamW.step") == "optimiser"
    assert kind("aten::native_layer_norm") == "normalisation"
    assert kind("something new") == "other"


@pytest.mark.parametrize("steps", [5, 1000])  # 1000: more than the epoch has (63), so all of it
def test_a_cpu_profile_of_the_lessons_conv_ae(profile_step, capsys, steps):
    threads = torch.get_num_threads()
    try:
        status = profile_step.main(["--model", "conv-ae", "--steps", str(steps), "--json"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert status == 0
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["model"] == "conv-ae" and figures["batch_size"] == 64  # aekit's default batch
    parts = figures["train_seconds"] + figures["validation_seconds"] + figures["checkpoint_seconds"]
    assert figures["epoch_seconds"] == pytest.approx(parts)
    assert all(figures[k] > 0 for k in ("train_seconds", "validation_seconds", "checkpoint_seconds"))
    kinds = figures["cpu_kinds"]
    assert sum(kinds.values()) == pytest.approx(1.0)
    # seven convolutions with their backward passes: on any CPU the largest kind of work here
    assert max(kinds, key=kinds.get) == "convolution"
    assert "training steps" in out and "the 12 that took longest" in out
    assert f"profiled {min(steps, 63)} steps" in out and figures["profiled_ms_per_step"] > 0
