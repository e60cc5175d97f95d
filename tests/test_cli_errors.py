"""Every command, given a bad path, the wrong kind of run or an out-of-range option, says so in
one line and exits non-zero -- never a traceback.

The matrix is built from ``aekit.cli.main.commands`` at test time, so a command added later is
walked too: each one that takes a run folder (an argument named RUN_DIR or PATH, or train's
--resume) gets a missing folder, a file in its place and a folder that holds no run.  A
command's other required inputs are filled with valid values (FILLERS), so the run folder is
the only thing wrong.  Click's own usage errors (exit status 2: an option's value out of its
declared range, say) print click's "Usage:" and "Try ... for help." lines around their one
"Error:" line; aekit's errors (exit status 1) are exactly one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from aekit.cli import main


def invoke(args: list[str]):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_error_line(result, *, contains: str | None = None) -> str:
    """Non-zero exit, no traceback, and the error in exactly one line."""
    output = result.output
    assert result.exit_code not in (0, None), f"exit {result.exit_code}: {output}"
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output
    if result.exit_code == 1:  # aekit's own errors: nothing but that line
        assert output.strip() == errors[0], output
    else:  # click's usage errors
        assert result.exit_code == 2, output
        assert all(line.startswith(("Usage: ", "Try ", "Error: ")) or not line.strip()
                   for line in output.splitlines()), output
    if contains is not None:
        assert contains in errors[0], errors[0]
    return errors[0]


# -- the commands, discovered --------------------------------------------------------------------

def run_dir_param(command: click.Command) -> click.Parameter | None:
    """The parameter that names a run folder, if the command takes one."""
    for param in command.params:
        if isinstance(param, click.Argument) and param.name in ("run_dir", "run_dirs", "path"):
            return param
    for param in command.params:
        if isinstance(param, click.Option) and param.name == "resume":
            return param
    return None


COMMANDS = sorted(main.commands)
RUN_COMMANDS = [name for name in COMMANDS if run_dir_param(main.commands[name]) is not None]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-inputs")
    image = root / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8), "L").save(image)
    a_file = root / "a-file.txt"
    a_file.write_text("not a run folder\n")
    not_a_run = root / "empty-folder"
    not_a_run.mkdir()
    text_as_image = root / "notes.png"
    text_as_image.write_text("this is text with an image suffix\n")
    return {"image": image, "file": a_file, "not_a_run": not_a_run, "text_as_image": text_as_image,
            "root": root}


def fillers(files: dict[str, Path], tmp: Path) -> dict[str, list[str]]:
    """Valid values for the other required inputs of each kind of command, by parameter name."""
    return {
        "images": [str(files["image"])],
        "kind": ["reconstructions"],
        "out_dir": ["-o", str(tmp / "out")],
        "out": ["-o", str(tmp / "codes.npy")],
    }


def command_line(name: str, run_dir: Path, files, tmp: Path) -> list[str]:
    """``name`` with ``run_dir`` as its run folder and valid values for its other required inputs."""
    command = main.commands[name]
    target = run_dir_param(command)
    fill = fillers(files, tmp)
    args, tail = [name], []
    for param in command.params:
        if param is target:
            if isinstance(param, click.Option):
                tail += ["--resume", str(run_dir)]
            else:
                args.append(str(run_dir))
        elif isinstance(param, click.Argument) and param.required:
            args += fill.get(param.name, ["x"])
        elif isinstance(param, click.Option) and param.required:
            tail += fill.get(param.name, [param.opts[0], "x"])
    return args + tail


def test_the_matrix_covers_every_command_that_takes_a_run():
    assert {"evaluate", "train", "serve", "sample", "denoise", "upscale"} <= set(RUN_COMMANDS), RUN_COMMANDS
    assert set(COMMANDS) - set(RUN_COMMANDS) <= {"models", "datasets", "pretrained", "runs"}, set(COMMANDS) - set(RUN_COMMANDS)


@pytest.mark.parametrize("command", RUN_COMMANDS)
@pytest.mark.parametrize("case", ["missing", "a file", "not a run"])
def test_a_bad_run_folder_is_one_line(command, case, files, tmp_path):
    run_dir = {"missing": tmp_path / "no-such-run", "a file": files["file"], "not a run": files["not_a_run"]}[case]
    result = invoke(command_line(command, run_dir, files, tmp_path))
    line = assert_one_error_line(result)
    assert str(run_dir) in line or repr(str(run_dir)) in line or run_dir.name in line, line


def test_commands_without_a_run_work():
    for name in set(COMMANDS) - set(RUN_COMMANDS):
        result = invoke([name])
        assert result.exit_code == 0 and result.output.strip(), (name, result.output)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_number_option_refuses_a_word(command, tmp_path):
    """Parsing comes first: a word where a number belongs is a usage error, for every option of every command."""
    for param in main.commands[command].params:
        if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType,
                                                                         click.types.FloatParamType)):
            values = ["many"] * (max(1, param.nargs))
            result = invoke([command, param.opts[0], *values, str(tmp_path / "x")])
            assert_one_error_line(result)
            assert result.exit_code == 2, (command, param.name, result.output)


# -- runs of the wrong kind, files that are not images -------------------------------------------

@pytest.fixture(scope="module")
def runs(make_run):
    return {
        "plain": make_run("dense-ae"),
        "denoise": make_run("dn", task="denoise", noise="gaussian:0.5"),
        "sr": make_run("sr", task="super-resolution", scale=2),
    }


@pytest.mark.parametrize(("command", "run", "message"), [
    ("upscale", "denoise", "super-resolution"),
    ("upscale", "plain", "super-resolution"),
    ("denoise", "sr", "denoise"),
    ("denoise", "plain", "denoise"),
])
def test_a_run_of_the_wrong_kind_is_one_line(command, run, message, runs, files, tmp_path):
    if command not in main.commands:
        pytest.skip(f"`aekit {command}` is not registered in this build")
    result = invoke([command, runs[run], files["image"], "-o", tmp_path / "out"])
    assert_one_error_line(result, contains=message)


@pytest.mark.parametrize("command", ["denoise", "upscale"])
@pytest.mark.parametrize("case", ["missing image", "folder as image", "text as image"])
def test_image_inputs_that_are_not_images_are_one_line(command, case, runs, files, tmp_path):
    if command not in main.commands:
        pytest.skip(f"`aekit {command}` is not registered in this build")
    run = runs["denoise" if command == "denoise" else "sr"]
    image = {"missing image": tmp_path / "nope.png", "folder as image": files["not_a_run"],
             "text as image": files["text_as_image"]}[case]
    result = invoke([command, run, image, "-o", tmp_path / "out"])
    assert_one_error_line(result, contains=image.name)
    assert not (tmp_path / "out" / image.name).exists()


# -- options out of range ----------------------------------------------------------------------------

OUT_OF_RANGE = [
    # (arguments after the command name; RUN is the tiny dense-ae run, OUT a scratch folder)
    ("train", ["--epochs", "0"]), ("train", ["--epochs", "-3"]), ("train", ["--batch-size", "0"]),
    ("train", ["--lr", "-1"]), ("train", ["--lr", "nan"]), ("train", ["--image-size", "0"]),
    ("train", ["--channels", "2"]), ("train", ["--latent-dim", "0"]), ("train", ["--latent-dim", "-4"]),
    ("train", ["--beta", "-1"]), ("train", ["--task", "super-resolution", "--scale", "3"]),
    ("train", ["--nproc", "0"]), ("train", ["--workers", "-1"]), ("train", ["--stop-after-epoch", "-1"]),
    ("train", ["--task", "denoise", "--noise", "gaussian:-1"]), ("train", ["--dataset", "folder:"]),
    ("evaluate", ["RUN", "--dataset", "nope"]), ("evaluate", ["RUN", "--dataset", "cifar10", "--data-dir", "OUT"]),
    ("sample", ["RUN", "-n", "0"]), ("sample", ["RUN", "-n", "-5"]), ("sample", ["RUN", "-n", "100000000"]),
    ("sample", ["RUN", "--temperature", "-1"]), ("sample", ["RUN", "--temperature", "nan"]),
    ("sample", ["RUN", "--temperature", "inf"]), ("plot", ["RUN", "manifold", "-n", "100000"]),
    ("plot", ["RUN", "interpolate", "-n", "10000000"]),
    ("sample", ["RUN", "--label", "3"]), ("sample", ["RUN", "-o", "OUT/x.jpg"]),
    ("plot", ["RUN", "nope"]), ("plot", ["RUN", "reconstructions", "-n", "0"]),
    ("plot", ["RUN", "interpolate", "--between", "0", "99999"]), ("plot", ["RUN", "interpolate", "--between", "-1", "2"]),
    ("plot", ["RUN", "scatter", "-n", "-1"]), ("plot", ["RUN", "ood"]),
    ("embed", ["RUN", "-o", "OUT/codes.txt"]), ("embed", ["RUN", "-o", "OUT/codes.npy", "--split", "nope"]),
    ("compare-pca", ["RUN", "-k", "0"]), ("compare-pca", ["RUN", "-k", "-2"]),
    ("report", ["RUN", "--device", "cuda"]),
    ("serve", ["RUN", "--port", "70000"]), ("serve", ["RUN", "--threads", "0"]),
    ("denoise", ["DENOISE", "IMAGE", "-o", "OUT/o", "--overlap", "-1"]),
    ("denoise", ["DENOISE", "IMAGE", "-o", "OUT/o", "--overlap", "28"]),
    ("upscale", ["SR", "IMAGE", "-o", "OUT/o", "--overlap", "1000"]),
]


@pytest.mark.parametrize(("command", "args"), OUT_OF_RANGE, ids=[" ".join([c, *a]) for c, a in OUT_OF_RANGE])
def test_out_of_range_options_are_one_line(command, args, runs, files, tmp_path, monkeypatch):
    if command not in main.commands:
        pytest.skip(f"`aekit {command}` is not registered in this build")
    if args == ["RUN", "--device", "cuda"]:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU: --device cuda is in range here")
    names = {"RUN": str(runs["plain"]), "DENOISE": str(runs["denoise"]), "SR": str(runs["sr"]),
             "IMAGE": str(files["image"])}
    argv = [names.get(a, a.replace("OUT", str(tmp_path))) for a in args]
    if command == "train":
        argv += ["--out", str(tmp_path / "new-run"), "--model", "dense-ae"] if "--model" not in argv else []
        argv += ["--image-size", "14"] if "--image-size" not in argv else []
    result = invoke([command, *argv])
    assert_one_error_line(result)
    if command == "train":
        assert not (tmp_path / "new-run" / "checkpoints").exists()


def test_the_real_executable_prints_one_line_on_stderr(tmp_path):
    """Through `python -m aekit` (not click's test runner): stderr holds the one line, stdout nothing."""
    result = subprocess.run([sys.executable, "-m", "aekit", "evaluate", str(tmp_path / "missing")],
                            check=False, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path / 'missing'}: no such run folder"]


# -- data that can only train a broken model ---------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_a_folder_of_all_black_images_is_refused_through_the_cli(stream, tmp_path):
    folder = tmp_path / "black"
    folder.mkdir()
    for i in range(12):
        Image.new("L", (16, 16), 0).save(folder / f"{i:02d}.png")
    args = ["train", "--model", "dense-ae", "--dataset", f"folder:{folder}", "--epochs", "1",
            "--out", tmp_path / "run", "--no-progress"]
    result = invoke(args + (["--stream", "--workers", "0"] if stream else []))
    assert_one_error_line(result, contains="same value")
    assert not (tmp_path / "run" / "model.safetensors").exists()
