"""The explorer against hostile surroundings: foreign Host headers on every loopback bind, broken
run folders beside good ones, junk metrics, and bugs, each answered as JSON, never a traceback.

Broken runs are copies of one tiny trained VAE, each damaged in one way (config.json nested too
deep, of the wrong types, with an out-of-range seed; weights missing or cut short).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from aekit.errors import CheckpointError
from aekit.web import create_app, loopback_hosts
from aekit.web.explorer import RunExplorer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def vae(make_run):
    return make_run("vae")


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))  # no fallback weights
    return dst


def edit_config(run: Path, edit) -> None:
    cfg = json.loads((run / "config.json").read_text())
    edit(cfg)
    (run / "config.json").write_text(json.dumps(cfg))


def _deep(run: Path) -> None:
    (run / "config.json").write_text('{"model": "vae", "model_config": ' + "[" * 100_000 + "]" * 100_000 + "}")


def _truncate(run: Path) -> None:
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])


# name -> (damage, the file its reason must name)
DAMAGES = {
    "config-nested-too-deep": (_deep, "config.json"),
    "config-not-json": (lambda r: (r / "config.json").write_text("{not json"), "config.json"),
    "config-wrong-type": (lambda r: edit_config(r, lambda c: c["train"].update(lr="fast")), "config.json"),
    "model-config-wrong-type": (lambda r: edit_config(r, lambda c: c["model_config"].update(hidden="64")),
                                "config.json"),
    "seed-negative": (lambda r: edit_config(r, lambda c: c["train"].update(seed=-5)), "config.json"),
    "seed-huge": (lambda r: edit_config(r, lambda c: c["train"].update(seed=2**70)), "config.json"),
    "weights-missing": (lambda r: (r / "model.safetensors").unlink(), "model.safetensors"),
    "weights-truncated": (_truncate, "model.safetensors"),
}


def broken_run(vae: Path, tmp_path: Path, kind: str) -> Path:
    run = copy_run(vae, tmp_path / kind)
    DAMAGES[kind][0](run)
    return run


def assert_json_error(res, status: int | None = None) -> dict:
    assert res.headers["content-type"].startswith("application/json"), res.text[:200]
    body = res.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert "Traceback" not in res.text
    if status is not None:
        assert res.status_code == status, res.text[:300]
    else:
        assert 400 <= res.status_code < 600
    return body


# -- the Host check ---------------------------------------------------------------------------

HOST_CASES = {
    "::1": (["[::1]", "[::1]:8000", "localhost", "LocalHost:8000", "127.0.0.1:8000", "[0:0:0:0:0:0:0:1]:80"],
            ["evil.example", "evil.example:8000", "::1", "[::1]:x", "[::1]x", "[::2]:8000", "127.0.0.2:8000"]),
    "127.0.0.2": (["127.0.0.2", "127.0.0.2:8000", "localhost:8000", "127.0.0.1", "[::1]:8000"],
                  ["evil.example:8000", "127.0.0.3:8000", "127.0.0.2.evil.example", "127.0.0.2:80:80"]),
    "localhost": (["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"],
                  ["evil.example", "localhost.evil.example:8000", "evil.example:localhost", "", ":8000"]),
    "127.0.0.1": (["127.0.0.1:8000", "localhost:1"], ["evil.example:8000", "0.0.0.0:8000", "testserver"]),
}


@pytest.fixture(scope="module")
def vae_copy(vae, tmp_path_factory):
    return copy_run(vae, tmp_path_factory.mktemp("hostile") / "vae")


@pytest.mark.parametrize("bind", list(HOST_CASES))
def test_loopback_binds_answer_only_loopback_host_headers(vae_copy, bind):
    allowed = loopback_hosts(bind)
    assert allowed is not None and "localhost" in allowed
    good, evil = HOST_CASES[bind]
    with TestClient(create_app([vae_copy], allowed_hosts=allowed)) as c:
        for host in good:
            assert c.get("/api/runs", headers={"host": host}).status_code == 200, host
        for host in evil:
            res = c.get("/api/runs", headers={"host": host})
            body = assert_json_error(res, 400)
            assert "Host" in body["error"], host
            assert res.headers["x-content-type-options"] == "nosniff"
        assert c.get("/").status_code == 400  # TestClient's own Host, "testserver", is refused too


def test_other_binds_keep_answering_any_host(vae_copy):
    for bind in ("0.0.0.0", "::", "192.168.1.20"):
        assert loopback_hosts(bind) is None, bind
    with TestClient(create_app([vae_copy], allowed_hosts=None)) as c:
        assert c.get("/api/runs", headers={"host": "evil.example:8000"}).status_code == 200


def test_a_name_bound_to_loopback_is_loopback():
    # /etc/hosts names like Debian's 127.0.1.1 entry: the address the socket got decides
    hosts = loopback_hosts("myhost", "127.0.1.1")
    assert hosts is not None and {"myhost", "127.0.1.1", "localhost"} <= set(hosts)
    assert loopback_hosts("myhost", "10.0.0.5") is None


# -- broken runs beside good ones ---------------------------------------------------------

@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_broken_run_is_listed_with_why_and_answers_json(vae, tmp_path, kind):
    bad = broken_run(vae, tmp_path, kind)
    good = copy_run(vae, tmp_path / "good")
    with TestClient(create_app([bad, good])) as c:  # the broken one first: the default skips it
        runs = c.get("/api/runs").json()["runs"]
        assert [r["id"] for r in runs] == ["0", "1"]
        assert runs[1]["broken"] is None and runs[1]["model"] == "vae"
        reason = runs[0]["broken"]
        assert runs[0]["name"] == kind and isinstance(reason, str)
        assert DAMAGES[kind][1] in reason and "\n" not in reason and len(reason) <= 400
        assert c.get("/api/run").json()["id"] == "1"  # no ?run=: the first good run
        for res in (c.get("/api/run?run=0"), c.get(f"/api/points?run={kind}"), c.get("/api/image/0?run=0"),
                    c.get("/api/sample?run=0"), c.post("/api/decode?run=0", json={"point": [0, 0]}),
                    c.get("/report/0/")):
            body = assert_json_error(res, 409)
            assert body["error"].startswith("this run is broken: ") and DAMAGES[kind][1] in body["error"]
        assert c.get("/api/points?run=1").status_code == 200


def test_a_run_broken_after_the_start_is_found_on_first_use(vae, tmp_path):
    run = copy_run(vae, tmp_path / "later")
    with TestClient(create_app([run, copy_run(vae, tmp_path / "good")])) as c:
        _truncate(run)
        body = assert_json_error(c.get("/api/points?run=0"), 409)
        assert "model.safetensors" in body["error"]
        assert_json_error(c.get("/api/run?run=0"), 409)  # remembered: not loaded again
        assert "model.safetensors" in c.get("/api/runs").json()["runs"][0]["broken"]
        assert c.get("/api/points?run=1").status_code == 200


def test_a_server_with_no_servable_run_does_not_start(vae, tmp_path):
    with pytest.raises(CheckpointError, match="no run to serve: .*model.safetensors"):
        create_app([broken_run(vae, tmp_path, "weights-missing")])
    with pytest.raises(CheckpointError, match="config.json.*; .*model.safetensors"):
        create_app([broken_run(vae, tmp_path, "seed-huge"), broken_run(vae, tmp_path, "weights-truncated")])


@pytest.mark.parametrize("kind", ["weights-truncated", "config-nested-too-deep"])
def test_serving_a_single_broken_run_is_one_error_line(vae, tmp_path, kind):
    run = broken_run(vae, tmp_path, kind)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "aekit", "serve", str(run), "--port", "0"],
                          check=False, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert str(run / DAMAGES[kind][1]) in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout and "serving" not in proc.stdout


# -- junk metrics -----------------------------------------------------------------------------

def test_junk_and_non_finite_metrics_answer_200_with_nulls(vae, tmp_path):
    run = copy_run(vae, tmp_path / "junk-metrics")
    (run / "metrics.jsonl").write_bytes(
        b"junk\n[1, 2]\n\xff\xfe\n"
        b'{"epoch": 1, "train": {"total": NaN, "kl": Infinity}, "val": {"total": -Infinity}, "lr": 1e-3}\n'
        b'{"epoch": 2, "train": {"total": 1.5}}\n')
    (run / "test_metrics.json").write_text('{"psnr": NaN, "mse": 0.01}')
    with TestClient(create_app([run])) as c:
        res = c.get("/api/run")
    assert res.status_code == 200, res.text
    assert "NaN" not in res.text and "Infinity" not in res.text
    info = res.json()
    first, second = info["metrics"]
    assert first["train"] == {"total": None, "kl": None} and first["val"]["total"] is None
    assert second["train"]["total"] == 1.5
    assert info["test_metrics"]["psnr"] is None and info["test_metrics"]["mse"] == 0.01


def test_any_nan_in_an_answer_becomes_null(vae_copy, monkeypatch):
    monkeypatch.setattr(RunExplorer, "test_image", lambda self, index: {"x": float("nan"), "y": [float("inf")]})
    with TestClient(create_app([vae_copy])) as c:
        res = c.get("/api/image/0")
    assert res.status_code == 200 and res.json() == {"x": None, "y": [None]}


# -- bugs -------------------------------------------------------------------------------------

def test_a_bug_is_a_json_500_and_the_server_stays_up(vae_copy, monkeypatch, caplog):
    def boom(self):
        raise RuntimeError("secret detail of a bug")

    monkeypatch.setattr(RunExplorer, "info", boom)
    with TestClient(create_app([vae_copy])) as c, caplog.at_level(logging.ERROR, logger="aekit.web.app"):
        res = c.get("/api/run")
        assert res.json() == {"error": "internal error: RuntimeError", "detail": "internal error: RuntimeError"}
        assert_json_error(res, 500)
        assert "secret" not in res.text and res.headers["x-content-type-options"] == "nosniff"
        assert c.get("/api/points").status_code == 200  # still serving
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret detail of a bug" in str(logged[0].exc_info[1])


def test_http_errors_are_json_too(vae_copy):
    with TestClient(create_app([vae_copy])) as c:
        assert_json_error(c.get("/api/nothing"), 404)
        assert_json_error(c.delete("/api/run"), 405)
        assert_json_error(c.get("/api/run?run=nope"), 404)
        assert_json_error(c.get("/api/sample?n=two"), 422)
        assert_json_error(c.post("/api/decode", content=b"{", headers={"content-type": "application/json"}), 422)
        deep = b'{"z": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
        assert_json_error(c.post("/api/decode", content=deep, headers={"content-type": "application/json"}), 422)
        assert_json_error(c.post("/api/decode", content=b"{}", headers={"content-length": "x"}), 400)
        assert_json_error(c.post("/api/reconstruct", content=b"junk",
                                 headers={"content-type": "multipart/form-data; boundary=b"}), 400)
