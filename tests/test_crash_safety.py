"""Training survives being killed at any moment, and a failed write loses nothing.

1. ``aekit train`` is SIGKILLed 22 times at seeded random moments (before the run folder exists,
   before the first checkpoint, mid-epoch, inside checkpoint writes, while the test metrics and
   report are written) and resumed each time with ``aekit train --resume RUN``: every resume
   works, the run folder between kills reads as whole or as "no checkpoint yet", and the finished
   run's weights, metrics and test metrics equal those of an uninterrupted run.
2. In process, every file-system step of a checkpoint save (writing epoch 3's checkpoint and
   pruning epoch 1's) is made to fail in turn: with an error (a full disk), with a "kill" (an
   exception and no clean-up at all, leaving temporary files behind), and torn (half a file
   written, or half a folder deleted).  Epoch 2's checkpoint always loads, no folder under a
   checkpoint's name is ever incomplete, and resuming ends where an uninterrupted run ends.
3. A real write failure (RLIMIT_FSIZE makes the kernel refuse to grow a file), a full disk,
   too little free space, and an --out that cannot be a folder all give one line and leave the
   last checkpoint whole.

What a kill repeats: checkpoints are written at the end of each epoch (and on Ctrl-C), so a
run killed mid-epoch redoes that epoch's steps from the last checkpoint, and a run killed after
training redoes the test metrics, reconstructions.png and report.html.  The repeated steps give
bit-identical results because each epoch's sample order and noise come from generators seeded
by (seed, epoch) and the optimiser state is restored with the weights.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import resource
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import aekit
import aekit.data as data_module
from aekit.app import training
from aekit.cli import main
from aekit.errors import AekitError, CheckpointError, ConfigError
from aekit.run import TEST_METRICS_NAME, read_config, read_metrics
from aekit.run.weights import build_from_config, load_weights
from aekit.train import checkpoint as ckpt
from aekit.train.loop import Callbacks, Trainer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals, fork and rlimits")

TRAIN_ARGS = ["train", "--model", "dense-ae", "--latent-dim", "4", "--batch-size", "256", "--image-size", "14",
              "--no-progress"]
KILL_EPOCHS = 8
MIN_KILLS = 22
TEMP_SUFFIXES = (".tmp", ".part")


# -- helpers ------------------------------------------------------------------------------------

def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def metrics_without_timing(run: Path) -> list[dict]:
    rows = read_metrics(run)
    for row in rows:
        row.pop("seconds", None)
        row.pop("images_per_second", None)
    return rows


def temp_leftovers(run: Path) -> set[str]:
    """Names of temporary files and folders in a run folder (a kill mid-write leaves them)."""
    if not run.is_dir():
        return set()
    found = {p.name for p in run.iterdir() if p.name.startswith(".") and p.name.endswith(TEMP_SUFFIXES)}
    found |= {f"checkpoints/{p.name}" for p in (run / ckpt.CHECKPOINTS_DIR).glob(".tmp-*")}
    return found


def check_run_folder(run: Path) -> str:
    """Everything a later command reads from ``run`` is whole.  Returns the state it found."""
    if not (run / ckpt.CONFIG_NAME).is_file():
        with pytest.raises(CheckpointError):
            aekit.load(run)
        return "no config.json yet"
    cfg = read_config(run)  # whole JSON, valid config
    checkpoints = ckpt.list_checkpoints(run)
    for path in checkpoints:  # every folder under a final name is complete
        ckpt.read_checkpoint(path)
        load_weights(build_from_config(cfg), path / ckpt.WEIGHTS_NAME)
    if (run / ckpt.WEIGHTS_NAME).exists() or checkpoints:
        model = aekit.load(run)
        assert torch.isfinite(model.reconstruct(torch.rand(2, 1, 14, 14))).all()
    else:
        with pytest.raises(CheckpointError, match="missing weights file"):
            aekit.load(run)
    rows = read_metrics(run)  # a line cut by the kill ends the list; none before it is cut
    assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
    lines = (run / ckpt.METRICS_NAME).read_text().splitlines() if (run / ckpt.METRICS_NAME).exists() else []
    assert len(rows) >= len(lines) - 1
    if (run / TEST_METRICS_NAME).exists():
        json.loads((run / TEST_METRICS_NAME).read_text())
    if (run / "report.html").exists():
        assert (run / "report.html").read_text().rstrip().endswith("</html>")
    if (run / "reconstructions.png").exists():
        with Image.open(run / "reconstructions.png") as image:
            image.verify()
    newest = checkpoints[-1].name if checkpoints else "none"
    return f"checkpoint {newest}"


# -- 1. SIGKILL at random moments -------------------------------------------------------------------

# A process that imports aekit once and then forks one child per `aekit train` command, so that a
# kill costs the child's work only, not torch's import (seconds on a busy machine).  The child
# runs the real command line (click's main, exactly as `aekit` does) with its output in a log.
FORK_SERVER = textwrap.dedent("""
    import io, json, os, sys
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)
    import matplotlib
    matplotlib.use("Agg")
    import aekit.app.training, aekit.cli, aekit.data, aekit.eval.evaluate, aekit.models, aekit.train.loop, aekit.app.report
    import matplotlib.pyplot, tqdm
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # its first use imports torch._dynamo: seconds
    figure = matplotlib.pyplot.figure()  # the first drawing loads fonts: seconds too
    figure.text(0.5, 0.5, "x")
    figure.savefig(io.BytesIO(), format="png")
    matplotlib.pyplot.close(figure)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            code = 0
            try:
                aekit.cli.main.main(request["args"], prog_name="aekit", standalone_mode=True)
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 99
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                          "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}), flush=True)
""")


class ForkServer:
    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert json.loads(self._readline(180)) == {"ready": True}

    def _readline(self, timeout: float) -> str:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise TimeoutError("the fork server did not answer")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.poll()})")
        return line

    def start(self, args: list[str], log: Path) -> int:
        self.proc.stdin.write(json.dumps({"args": args, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        self.started = time.monotonic()
        self.child = json.loads(self._readline(60))["pid"]
        return self.child

    def poll_exit(self, timeout: float) -> dict | None:
        """The child's exit ({"signal", "code"}) if it ends within ``timeout`` seconds, else None."""
        ready, _, _ = select.select([self.proc.stdout], [], [], max(timeout, 0))
        if not ready:
            return None
        self.child = None
        return json.loads(self._readline(1))

    def close(self) -> None:
        """Stop the server, and a child still training if a failed assertion left one."""
        if getattr(self, "child", None):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.child, signal.SIGKILL)
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _metric_lines(run: Path, stale_inode: int | None = None) -> int:
    """Lines in metrics.jsonl; 0 while it is still the file ``stale_inode`` (a resumed run first
    rewrites it, atomically, to the epochs its checkpoint holds)."""
    try:
        path = run / ckpt.METRICS_NAME
        if stale_inode is not None and path.stat().st_ino == stale_inode:
            return 0
        return path.read_bytes().count(b"\n")
    except OSError:
        return 0


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _run_watching(server: ForkServer, args: list[str], log: Path, run: Path, timeout: float = 600) -> dict:
    """Run a command to its end, noting when config.json, each metrics line and each checkpoint appear."""
    pid = server.start(args, log)
    assert pid > 0
    lines, ckpts, begin, config = [], [], None, None
    seen_lines, seen_ckpts = _metric_lines(run), len(ckpt.list_checkpoints(run))
    while True:
        status = server.poll_exit(0.005)
        now = time.monotonic() - server.started
        if status is not None:
            return {"status": status, "lines": lines, "ckpts": ckpts, "total": now, "begin": begin, "config": config}
        if config is None and (run / ckpt.CONFIG_NAME).exists():  # data loaded, run folder made
            config = now
        if begin is None and (run / ckpt.METRICS_NAME).exists():  # the trainer starts
            begin = now
        if (n := _metric_lines(run)) > seen_lines:
            lines.append(now)
            seen_lines = n
        if (n := len(ckpt.list_checkpoints(run))) != seen_ckpts:
            ckpts.append(now)
            seen_ckpts = n
        assert now < timeout, "training did not finish"


def _kill_plan(rng: random.Random, kills: int, done: int, timing: dict, *, need_write: bool) -> tuple[str, int, float]:
    """Where the next kill lands: (what to wait for, metrics lines to wait for, random delay after it).

    The first kill comes while the data load (no run folder yet), the second as soon as the run
    folder exists (no checkpoint yet).  After that the run is spread over the kills: an attempt
    lets one more epoch's checkpoint land only when the run is behind schedule, so most kills
    fall mid-epoch or mid-write, and the last few after training (test metrics, figures, report).
    Kills timed from the start use what resumes take (``resume``: until the trainer starts;
    ``finish``: a resume of a finished run), not the first run's phases: a fresh run's data load
    and report are slower, the more so on a cold machine, and kills timed from them came too late.
    """
    epoch, write = timing["epoch"], timing["write"]
    if kills == 0:
        return "before the run folder", 0, rng.uniform(0, 0.8 * timing["config"])
    if kills == 1:
        return "once config.json exists", -1, rng.uniform(0, 0.05)
    if done >= KILL_EPOCHS:  # training is over: kills while a resume writes the test metrics and report
        return "from start", 0, rng.uniform(0, 0.9 * timing["finish"])
    behind = done < KILL_EPOCHS * (kills + 1) / (MIN_KILLS - 3)
    if need_write or rng.random() < 0.5:  # inside a checkpoint write: just after an epoch's metrics line appears
        return "in write", 1 + (behind and done < KILL_EPOCHS - 1), rng.uniform(0, write)
    if behind:
        return "mid-epoch", 1, rng.uniform(0, epoch)
    return "from start", 0, rng.uniform(0, timing["resume"] + 0.8 * epoch)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    history: list[str] = []
    try:
        _sigkill_test(tmp_path, history)
    except AssertionError as err:  # say what each attempt did, whatever failed
        raise AssertionError(f"{err}\n" + "\n".join(history)) from None
    print("\n" + "\n".join(history))


def _sigkill_test(tmp_path: Path, history: list[str]) -> None:
    server = ForkServer()
    try:
        # The uninterrupted run, watched to learn how long the phases take on this machine.
        reference = tmp_path / "reference"
        watched = _run_watching(server, [*TRAIN_ARGS, "--epochs", str(KILL_EPOCHS), "--out", str(reference)],
                                tmp_path / "reference.log", reference)
        assert watched["status"] == {"signal": None, "code": 0}, (tmp_path / "reference.log").read_text()
        lines = watched["lines"]
        epoch = (lines[-1] - lines[0]) / (KILL_EPOCHS - 1)  # training, validation and checkpoint of one epoch
        timing = {"epoch": epoch, "startup": watched["begin"], "config": watched["config"],
                  "post": watched["total"] - lines[-1],
                  "write": max(min(c - line for c, line in zip(watched["ckpts"], lines)), 0.05)}
        # A resume of the finished run (a copy: the reference stays as it was) times what the kills
        # after training aim at, now that every cache is warm.
        finished = tmp_path / "finished"
        shutil.copytree(reference, finished)
        again = _run_watching(server, ["train", "--resume", str(finished), "--no-progress"],
                              tmp_path / "finished.log", finished)
        assert again["status"] == {"signal": None, "code": 0}, (tmp_path / "finished.log").read_text()
        timing["finish"] = again["total"]
        timing["resume"] = min(timing["startup"], again["total"])  # until resumes are seen to start
        resume_starts: list[float] = []
        history.append(f"phases (s): { {k: round(v, 2) for k, v in timing.items()} }")

        rng = random.Random(20240607)
        run = tmp_path / "run"
        kills, in_write, attempts, states = 0, 0, 0, []
        # 22 kills.  From the fifth on, while none has landed inside a write yet, every kill aims at
        # one (on a busy machine the watcher may see an epoch's metrics line only after its checkpoint).
        while kills < MIN_KILLS:
            attempts += 1
            assert attempts <= MIN_KILLS + 30, f"only {kills} kills landed in {attempts} attempts"
            fresh = not (run / ckpt.CONFIG_NAME).exists()
            args = [*TRAIN_ARGS, "--epochs", str(KILL_EPOCHS), "--out", str(run)] if fresh \
                else ["train", "--resume", str(run), "--no-progress"]
            done = max((int(p.name.split("-")[1]) for p in ckpt.list_checkpoints(run)), default=0)
            aim, wait_lines, delay = _kill_plan(rng, kills, done, timing, need_write=kills >= 4 and not in_write)
            before = temp_leftovers(run)
            stale = _inode(run / ckpt.METRICS_NAME)
            pid = server.start(args, tmp_path / f"attempt-{attempts}.log")
            deadline = server.started + delay if wait_lines == 0 else None
            started = None  # when a resume rewrote metrics.jsonl: its trainer started
            while True:
                if started is None and not fresh and _inode(run / ckpt.METRICS_NAME) != stale:
                    started = time.monotonic() - server.started
                if deadline is None and (
                        (wait_lines < 0 and (run / ckpt.CONFIG_NAME).exists())
                        or (wait_lines > 0 and _metric_lines(run, stale) >= done + wait_lines)):
                    deadline = time.monotonic() + delay
                # The first kill must come before the run folder: the reference run's load may have
                # been slower (a cold cache), so it also comes the moment config.json appears.
                early = wait_lines == 0 and kills == 0 and (run / ckpt.CONFIG_NAME).exists()
                if early or (deadline is not None and time.monotonic() >= deadline):
                    os.kill(pid, signal.SIGKILL)
                    status = server.poll_exit(60)
                    break
                status = server.poll_exit(0.002)
                if status is not None:
                    break
            log = (tmp_path / f"attempt-{attempts}.log").read_text()
            assert "Traceback" not in log and "Error" not in log, log
            if status["signal"] == signal.SIGKILL:
                kills += 1
                landed = "inside a write" if temp_leftovers(run) - before else "elsewhere"
                in_write += landed == "inside a write"
            else:
                assert status["code"] == 0, log  # it ended by itself before the kill: the run was complete
                landed = "not killed: ended by itself"
            states.append(check_run_folder(run))
            history.append(f"attempt {attempts}: {aim} +{delay:.2f}s -> {landed}; then {states[-1]}")
            if started is not None and done < KILL_EPOCHS:
                resume_starts.append(started)
                timing["resume"] = sorted(resume_starts)[len(resume_starts) // 2]
            if status["signal"] is None and done >= KILL_EPOCHS:
                timing["finish"] = min(timing["finish"], time.monotonic() - server.started)

        # Resume once more without a kill: the run ends, equal to the uninterrupted one.
        final = _run_watching(server, ["train", "--resume", str(run), "--no-progress"], tmp_path / "final.log", run)
        assert final["status"] == {"signal": None, "code": 0}, (tmp_path / "final.log").read_text()
    finally:
        server.close()
    history.append(f"{kills} kills in {attempts} attempts, {in_write} inside a file write; "
                   f"resumes start after {timing['resume']:.2f}s, a finished run's resume takes {timing['finish']:.2f}s")
    assert_same_weights(reference / ckpt.WEIGHTS_NAME, run / ckpt.WEIGHTS_NAME)
    assert metrics_without_timing(run) == metrics_without_timing(reference)
    assert json.loads((run / TEST_METRICS_NAME).read_text()) == \
        json.loads((reference / TEST_METRICS_NAME).read_text())
    assert check_run_folder(run).startswith(f"checkpoint ckpt-{KILL_EPOCHS:05d}")
    # The resume cleared what kills left beside the trainer's files; a temporary report.html can
    # stay (`aekit report` may be writing one at any time, so training leaves those alone).
    assert not {n for n in temp_leftovers(run) if not n.startswith(".report.html.")}, temp_leftovers(run)
    assert {"no config.json yet", "checkpoint none"} & set(states[:2]), states
    assert in_write >= 1, "no kill landed inside a write"


# -- 2. every step of a checkpoint save fails in turn ------------------------------------------------

TINY = {"model": "dense-ae", "batch_size": 128, "image_size": 14, "model_options": {"hidden": (16,), "latent_dim": 3},
        "evaluate_test": False, "write_report": False, "seed": 3}


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except BaseException` clean-ups."""


@pytest.fixture(scope="module")
def small_data():
    """mnist-5k cut to 600 images, loaded once (the steps under test are the file writes)."""
    real = data_module.load_dataset
    cache = {}

    def load(name, **kwargs):
        key = (name, kwargs.get("image_size"), kwargs.get("channels"), kwargs.get("seed"))
        if key not in cache:
            splits = real(name, **kwargs)
            splits.train = data_module.ImageSet(splits.train.images[:600].clone(), splits.train.labels[:600].clone())
            cache[key] = splits
        return cache[key]

    return load


def _no_figure(*args, **kwargs):
    return None


@pytest.fixture
def patched_data(monkeypatch, small_data):
    """The small data, and no reconstructions.png (matplotlib takes seconds; it is not under test)."""
    monkeypatch.setattr(data_module, "load_dataset", small_data)
    monkeypatch.setattr(training, "save_reconstructions", _no_figure)


class Tripwire:
    """Counts the file-system calls a checkpoint save makes, and fails the k-th one.

    Armed only inside Trainer.save_checkpoint for the epoch under test.  Modes: "error" raises
    ENOSPC (clean-ups run, as for a real full disk); "before"/"after" raise Killed before or after
    the call and turn every later clean-up into a no-op (as a SIGKILL would); "torn" does
    that after writing only half of the file (a kill while the bytes were going out), or after
    deleting only part of a folder.
    """

    CALLS: ClassVar[list] = [(os, "replace"), (os, "rename"), (os, "fsync"), (os, "mkdir"), (tempfile, "mkstemp"),
             (tempfile, "mkdtemp"), (ckpt, "save_file"), (torch, "save"), (shutil, "rmtree")]

    def __init__(self, monkeypatch, *, fail_at: int | None = None, mode: str = "error"):
        self.armed = False
        self.count = 0
        self.log: list[str] = []
        self.fail_at = fail_at
        self.mode = mode
        self.killed = False
        self.tripped = False
        for owner, name in self.CALLS:
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), name))
        real_unlink = Path.unlink

        def unlink(path, *args, **kwargs):
            if not self.killed:
                real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(Path, "unlink", unlink)

    def _wrap(self, real, name):
        def call(*args, **kwargs):
            if self.killed and name == "rmtree":
                return None  # a killed process cleans nothing up
            def real_call():
                if name == "fsync":  # durability is not under test here; skipping it keeps the test fast
                    return None
                return real(*args, **kwargs)

            if not self.armed or self.tripped:
                return real_call()
            self.count += 1
            self.log.append(name)
            if self.count != self.fail_at:
                return real_call()
            self.tripped = True
            if self.mode == "error":
                if name == "rmtree" and kwargs.get("ignore_errors"):
                    return None  # rmtree(ignore_errors=True) never raises: the folder just stays
                raise OSError(errno.ENOSPC, "No space left on device")
            self.killed = True
            if self.mode == "before":
                raise Killed
            if self.mode == "torn" and name == "rmtree":  # killed halfway through deleting a folder
                files = sorted(f for f in Path(args[0]).rglob("*") if f.is_file())
                if files:
                    os.unlink(files[0])
                raise Killed
            with contextlib.suppress(Exception):  # (mkdir of a folder that exists fails; no matter)
                real_call()
            if self.mode == "torn":
                if name == "save_file":
                    target = Path(args[1])
                    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
                elif name == "fsync" and stat.S_ISREG(os.fstat(args[0]).st_mode):  # not a folder's fsync
                    os.ftruncate(args[0], os.fstat(args[0]).st_size // 2)
            raise Killed

        return call


def _arm_at_epoch(monkeypatch, wire: Tripwire, epoch: int) -> None:
    real = Trainer.save_checkpoint

    def save_checkpoint(self, noise_gen, partial=None):
        wire.armed = self.epoch == epoch
        try:
            return real(self, noise_gen, partial)
        finally:
            wire.armed = False

    monkeypatch.setattr(Trainer, "save_checkpoint", save_checkpoint)


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory, small_data):
    """An uninterrupted 3-epoch run, and the same run stopped after epoch 2 (to be resumed): the
    save under test, epoch 3's, writes a checkpoint and prunes epoch 1's."""
    mp = pytest.MonkeyPatch()
    mp.setattr(data_module, "load_dataset", small_data)
    mp.setattr(training, "save_reconstructions", _no_figure)
    try:
        root = tmp_path_factory.mktemp("stages")
        training.train(epochs=3, out=root / "full", **TINY)
        training.train(epochs=3, out=root / "part", stop_after_epoch=2, **TINY)
    finally:
        mp.undo()
    return root / "full", root / "part"


def _calls_in_one_save(monkeypatch, template: Path, tmp: Path) -> list[str]:
    run = tmp / "count"
    shutil.copytree(template, run)
    with monkeypatch.context() as m:
        wire = Tripwire(m)
        _arm_at_epoch(m, wire, 3)
        training.train(resume=run, **{k: TINY[k] for k in ("evaluate_test", "write_report")})
    return wire.log


@pytest.mark.parametrize("mode", ["error", "before", "after", "torn"])
def test_every_step_of_a_checkpoint_save_can_fail_without_losing_the_last_checkpoint(
        mode, stage_runs, tmp_path, monkeypatch, patched_data):
    full, part = stage_runs
    calls = _calls_in_one_save(monkeypatch, part, tmp_path)
    assert {"save_file", "save", "rename", "replace", "fsync", "rmtree"} <= set(calls), calls
    tried = 0
    for k, name in enumerate(calls, start=1):
        if mode == "torn" and name not in ("save_file", "fsync", "rmtree"):
            continue
        run = tmp_path / f"{mode}-{k}"
        shutil.copytree(part, run)
        with monkeypatch.context() as m:
            wire = Tripwire(m, fail_at=k, mode=mode)
            _arm_at_epoch(m, wire, 3)
            try:
                training.train(resume=run, evaluate_test=False, write_report=False)
                raised = None
            except (Killed, AekitError) as err:
                raised = err
        assert wire.tripped
        where = f"call {k} ({name}), mode {mode}"
        names = [p.name for p in ckpt.list_checkpoints(run)]
        if mode == "error":
            # One clear message, never a raw OSError, and no temporary file left behind -- or no
            # error at all where the code rightly shrugs the failure off (mkdir of a folder that
            # exists; pruning epoch 1's checkpoint, which can wait for the next save).
            if raised is None:
                assert name in ("mkdir", "rename", "rmtree") and names[-1].startswith("ckpt-00003"), (where, names)
            else:
                assert isinstance(raised, CheckpointError), where
                assert "No space left on device" in str(raised) and "\n" not in str(raised), where
            assert not temp_leftovers(run), (where, temp_leftovers(run))
        else:
            assert isinstance(raised, Killed), where
        # Epoch 2's checkpoint is whole, whatever happened to the save of epoch 3; every folder
        # under a checkpoint's name is complete (none half written, none half deleted).
        assert any(n.startswith("ckpt-00002") for n in names), (where, names)
        assert check_run_folder(run).startswith("checkpoint ckpt-0000"), where
        # Resuming ends where the uninterrupted run ends, and clears what the failure left.
        training.train(resume=run, evaluate_test=False, write_report=False)
        assert_same_weights(full / ckpt.WEIGHTS_NAME, run / ckpt.WEIGHTS_NAME)
        assert metrics_without_timing(run) == metrics_without_timing(full), where
        assert not temp_leftovers(run), (where, temp_leftovers(run))
        assert not list((run / ckpt.CHECKPOINTS_DIR).glob(".*")), where
        tried += 1
    assert tried >= (3 if mode == "torn" else 15), calls


@pytest.mark.parametrize("mode", ["before", "after", "torn"])
def test_a_stop_right_after_an_epoch_never_removes_that_epochs_checkpoint(
        mode, stage_runs, tmp_path, monkeypatch, patched_data):
    """Ctrl-C before the first step of an epoch saves the point the epoch's end already saved;
    a kill during that second save must not leave the run without it."""
    full, part = stage_runs
    for k in range(1, 100):
        run = tmp_path / f"{mode}-{k}"
        shutil.copytree(part, run)
        with monkeypatch.context() as m:
            wire = Tripwire(m, fail_at=k, mode=mode)
            _arm_at_epoch(m, wire, 2)  # the stop-save happens with epoch == 2, before any step of epoch 3
            try:
                training.train(resume=run, evaluate_test=False, write_report=False,
                          callbacks=Callbacks(should_stop=lambda: True))
            except Killed:
                pass
        if not wire.tripped:
            break  # the save has fewer steps than k: all of them were tried
        assert [p.name for p in ckpt.list_checkpoints(run)][-1].startswith("ckpt-00002"), (k, mode)
        check_run_folder(run)
        training.train(resume=run, evaluate_test=False, write_report=False)
        assert_same_weights(full / ckpt.WEIGHTS_NAME, run / ckpt.WEIGHTS_NAME)
    assert k > 3, "the save made almost no file-system calls: the test no longer reaches it"


# -- 3. real write failures, a full disk, an impossible --out -------------------------------------------

def _one_line_error(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_a_write_the_kernel_refuses_gives_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """RLIMIT_FSIZE makes write() fail with EFBIG, exactly where a full disk fails with ENOSPC."""
    run = tmp_path / "run"
    monkeypatch.setattr(training, "save_reconstructions", _no_figure)
    options = {"model": "dense-ae", "model_options": {"latent_dim": 4}, "batch_size": 256, "image_size": 14,
               "epochs": 2, "evaluate_test": False, "write_report": False}
    training.train(out=run, stop_after_epoch=1, **options)
    good = ckpt.list_checkpoints(run)
    assert [p.name for p in good] == ["ckpt-00001-000000016"]
    before = weights(good[0] / ckpt.WEIGHTS_NAME)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of a signal
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))  # weights are ~0.9 MB

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    failed = subprocess.run([sys.executable, "-m", "aekit", "train", "--resume", str(run), "--no-progress"],
                            check=False, capture_output=True, text=True, env=env, timeout=300,
                            preexec_fn=small_files)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    message = failed.stderr.strip().splitlines()
    assert len(message) == 1 and "Traceback" not in failed.stderr, failed.stderr
    assert "File too large" in message[0] and "ckpt-00001-000000016, is untouched" in message[0], message
    assert f"aekit train --resume {run}" in message[0]
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["ckpt-00001-000000016"]
    after = weights(good[0] / ckpt.WEIGHTS_NAME)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not temp_leftovers(run)
    check_run_folder(run)
    training.train(resume=run, evaluate_test=False, write_report=False)  # with room again, the run ends
    assert ckpt.list_checkpoints(run)[-1].name == "ckpt-00002-000000032"
    reference = tmp_path / "reference"
    training.train(out=reference, **options)
    assert_same_weights(reference / ckpt.WEIGHTS_NAME, run / ckpt.WEIGHTS_NAME)


def test_full_disk_mid_run_through_the_cli(tmp_path, monkeypatch, patched_data, stage_runs):
    full, part = stage_runs
    run = tmp_path / "run"
    shutil.copytree(part, run)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ckpt, "save_file", no_space)
        result = CliRunner().invoke(main, ["train", "--resume", str(run), "--no-progress"])
    line = _one_line_error(result)
    assert "No space left on device" in line and "the last good one, ckpt-00002-000000010, is untouched" in line
    check_run_folder(run)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["ckpt-00001-000000005", "ckpt-00002-000000010"]
    training.train(resume=run, evaluate_test=False, write_report=False)
    assert_same_weights(full / ckpt.WEIGHTS_NAME, run / ckpt.WEIGHTS_NAME)


def test_too_little_free_space_is_refused_before_training(tmp_path, monkeypatch, patched_data):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=50_000))
    with pytest.raises(ConfigError, match=r"MB free on its disk, but this model's checkpoints need about"):
        training.train(epochs=1, out=tmp_path / "run", **TINY)
    assert not (tmp_path / "run" / ckpt.CHECKPOINTS_DIR).exists()
    assert not (tmp_path / "run" / ckpt.METRICS_NAME).exists()


@pytest.mark.parametrize("where", ["under-a-file", "dev-null"])
def test_an_out_that_cannot_be_a_folder_is_refused_before_training(where, tmp_path, monkeypatch, patched_data):
    # Root ignores chmod, so "unwritable" is a path whose parent is a file.
    (tmp_path / "a-file").write_text("x")
    out = tmp_path / "a-file" / "run" if where == "under-a-file" else Path("/dev/null/run")
    calls = []
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: calls.append(1))
    result = CliRunner().invoke(main, ["train", "--model", "dense-ae", "--epochs", "1", "--out", str(out),
                                       "--image-size", "14"])
    line = _one_line_error(result)
    assert f"--out {out}: cannot write there (Not a directory)" in line
    assert not calls
