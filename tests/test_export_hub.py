"""`aekit export RUN DIR --format hub` and `aekit.load("hf://ORG/NAME[@REV]")`.

The download goes through huggingface_hub's real ``snapshot_download``: a small HTTP server on
127.0.0.1, started here, answers the requests the Hub answers (a revision's commit, the file
tree, each file's metadata and bytes) from exported folders, and aekit runs in a fresh
interpreter pointed at it with ``HF_ENDPOINT``, as a user would point it at a mirror.  Nothing
of huggingface_hub is replaced; the server only plays the Hub's part.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from aekit.cli import main
from aekit.errors import ConfigError
from aekit.run import Run, sources

huggingface_hub = pytest.importorskip("huggingface_hub")

REPO_ID = "test-org/tiny-vae"


def export_hub(run_dir: Path, out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(main, ["export", str(run_dir), str(out), "--format", "hub", *extra])
    assert result.exit_code == 0, result.output
    return out


def reconstruct(model, seed: int = 0) -> np.ndarray:
    x = torch.rand((4, *model.in_shape), generator=torch.Generator().manual_seed(seed))
    return model.reconstruct(x).numpy()


# -- the folder and its card --------------------------------------------------------------------------

def test_the_hub_folder_is_a_run_folder_with_a_card_the_hub_reads(make_run, tmp_path):
    run_dir = make_run("conv-vae")
    out = export_hub(run_dir, tmp_path / "hub", "--repo-id", REPO_ID, "--license", "apache-2.0")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.safetensors", "test_metrics.json", "metrics.jsonl", "reconstructions.png",
         "README.md"])
    assert (out / "model.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["data_dir"] is None  # a local path means nothing on the Hub
    original = reconstruct(Run.open(run_dir).load_model())
    np.testing.assert_array_equal(reconstruct(Run.open(out).load_model()), original)

    card = huggingface_hub.ModelCard.load(out / "README.md")  # the Hub's own parser
    data = card.data
    assert data.library_name == "aekit" and data.license == "apache-2.0"
    assert data.datasets == ["ylecun/mnist"] and "aekit" in data.tags and "variational-autoencoder" in data.tags
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    found = {r.metric_type: r.metric_value for r in data.eval_results}
    assert found["psnr"] == pytest.approx(metrics["psnr_db"], rel=1e-4)
    assert found["elbo"] == pytest.approx(metrics["elbo"], rel=1e-4)
    assert found["ssim"] == pytest.approx(metrics["ssim"], rel=1e-4)
    assert {r.dataset_type for r in data.eval_results} == {"ylecun/mnist"}
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    assert f'aekit.load("hf://{REPO_ID}")' in card.text
    assert "![reconstructions](reconstructions.png)" in card.text


def test_without_a_repo_id_the_card_says_where_to_put_it(make_run, tmp_path):
    # --format hub is the default
    result = CliRunner().invoke(main, ["export", str(make_run("conv-vae")), str(tmp_path / "hub")])
    assert result.exit_code == 0, result.output
    assert "--repo-id" in result.output and "hf upload ORG/NAME" in result.output
    assert 'aekit.load("hf://ORG/NAME")' in (tmp_path / "hub" / "README.md").read_text()


def test_a_folder_that_holds_files_is_refused_unless_forced(make_run, tmp_path):
    out = tmp_path / "hub"
    out.mkdir()
    (out / "README.md").write_text("my own notes")
    result = CliRunner().invoke(main, ["export", str(make_run("conv-vae")), str(out)])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "--force" in result.output
    assert result.output.count("\n") == 1 and (out / "README.md").read_text() == "my own notes"
    export_hub(make_run("conv-vae"), out, "--force")
    assert "library_name: aekit" in (out / "README.md").read_text()


def test_bad_hub_names_are_one_line_before_any_request(monkeypatch):
    for spec in ("hf://just-a-name", "hf://a/b/c", "hf://../x", "hf://org/name@", "hf://org/na me"):
        with pytest.raises(ConfigError, match="hf://"):
            sources.resolve(spec)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # as if the extra were not installed
    monkeypatch.setattr(sources, "_downloaded", {})
    with pytest.raises(ConfigError, match=r'pip install "aekit\[hub\]"'):
        Run.open("hf://org/name")


# -- the download, through huggingface_hub ---------------------------------------------------------------

class FakeHub:
    """The Hub's side of snapshot_download, for one repository: revisions -> (commit, folder).
    Every request path is recorded."""

    def __init__(self, repo_id: str, revisions: dict[str, tuple[str, Path]]):
        self.repo_id, self.revisions, self.requests = repo_id, revisions, []
        self.commits = {commit: folder for commit, folder in revisions.values()}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                path = unquote(urlsplit(self.path).path)
                hub.requests.append((self.command, path))
                status, body, headers = hub.answer(path)
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def files(self, folder: Path) -> list[str]:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())

    def answer(self, path: str) -> tuple[int, bytes, dict]:
        api = f"/api/models/{self.repo_id}/"
        if not path.startswith((api, f"/{self.repo_id}/")):
            return 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}
        if path.startswith(api + "revision/"):
            revision = path[len(api + "revision/"):]
            if revision not in self.revisions and revision not in self.commits:
                return 404, b'{"error": "Revision not found"}', {"X-Error-Code": "RevisionNotFound"}
            commit, folder = self.revisions.get(revision) or (revision, self.commits[revision])
            body = {"id": self.repo_id, "sha": commit, "siblings": [{"rfilename": f} for f in self.files(folder)]}
            return 200, json.dumps(body).encode(), {"Content-Type": "application/json"}
        if path.startswith(api + "tree/"):
            folder = self.commits[path[len(api + "tree/"):].split("/")[0]]
            tree = [{"type": "file", "path": f, "size": (folder / f).stat().st_size,
                     "oid": hashlib.sha1((folder / f).read_bytes()).hexdigest()} for f in self.files(folder)]
            return 200, json.dumps(tree).encode(), {"Content-Type": "application/json"}
        if path.startswith(f"/{self.repo_id}/resolve/"):
            commit, name = path[len(f"/{self.repo_id}/resolve/"):].split("/", 1)
            data = (self.commits[commit] / name).read_bytes()
            return 200, data, {"X-Repo-Commit": commit, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
        return 404, b"{}", {}

    def close(self):
        self.server.shutdown()
        self.server.server_close()


LOAD = """
import json, sys
from pathlib import Path
import numpy as np, torch, aekit

out = {}
for arg in sys.argv[2:]:
    spec = arg.removeprefix("path:")
    source = Path(spec) if arg.startswith("path:") else spec  # a Path folds "hf://" to "hf:/"
    run = aekit.Run.open(source)
    model = aekit.load(source)
    x = torch.rand((4, *model.in_shape), generator=torch.Generator().manual_seed(0))
    np.save(Path(sys.argv[1]) / (str(len(out)) + ".npy"), model.reconstruct(x).numpy())
    out[spec] = {"model": run.config.model, "name": run.name, "read_only": run.read_only, "folder": str(run.path),
                 "files": sorted(p.name for p in run.path.iterdir())}
print(json.dumps(out))
"""


def hub_env(home: Path, endpoint: str | None, *, offline: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "HF_HUB_OFFLINE": "1" if offline else "0", "PYTHONWARNINGS": "ignore"})
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def python(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.mark.slow
def test_load_from_the_hub_through_huggingface_hub_then_offline(make_run, tmp_path):
    vae_run, ae_run = make_run("conv-vae"), make_run("dense-ae")
    v1 = export_hub(vae_run, tmp_path / "v1", "--repo-id", REPO_ID)
    v0 = export_hub(ae_run, tmp_path / "v0", "--repo-id", REPO_ID)
    for folder in (v1, v0):  # what else a repository may hold is never downloaded
        (folder / "evil.pkl").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
        (folder / "extra").mkdir()
        (folder / "extra" / "notes.txt").write_text("not aekit's")
    main_commit, old_commit = "a" * 40, "b" * 40
    hub = FakeHub(REPO_ID, {"main": (main_commit, v1), "v0": (old_commit, v0)})
    home, arrays = tmp_path / "hf-home", tmp_path / "arrays"
    arrays.mkdir()
    try:
        done = python(["-c", LOAD, str(arrays), f"hf://{REPO_ID}", f"path:hf://{REPO_ID}@v0"], hub_env(home, hub.url),
                      tmp_path)
        assert done.returncode == 0, done.stderr
        loaded = json.loads(done.stdout)
        # the CLI too, through click's path argument (which folds "hf://" to "hf:/")
        cli = python(["-m", "aekit", "export", f"hf://{REPO_ID}@v0", str(tmp_path / "again"), "--format", "hub"],
                     hub_env(home, hub.url), tmp_path)
        missing = python(["-m", "aekit", "evaluate", f"hf://{REPO_ID}@no-such-tag"], hub_env(home, hub.url), tmp_path)
    finally:
        hub.close()

    latest, old = loaded[f"hf://{REPO_ID}"], loaded[f"hf://{REPO_ID}@v0"]
    assert (latest["model"], old["model"]) == ("conv-vae", "dense-ae")
    assert latest["name"] == REPO_ID and old["name"] == f"{REPO_ID}@v0" and latest["read_only"]
    # in huggingface_hub's own cache, one snapshot per commit, with aekit's files only
    cache = home / "hub" / "models--test-org--tiny-vae" / "snapshots"
    assert Path(latest["folder"]) == cache / main_commit and Path(old["folder"]) == cache / old_commit
    assert latest["files"] == sorted(sources.HUB_FILES) == old["files"]
    fetched = {path for method, path in hub.requests if "/resolve/" in path}
    assert fetched and not [p for p in fetched if "evil" in p or "extra" in p], fetched
    np.testing.assert_array_equal(np.load(arrays / "0.npy"), reconstruct(Run.open(vae_run).load_model()))
    np.testing.assert_array_equal(np.load(arrays / "1.npy"), reconstruct(Run.open(ae_run).load_model()))

    assert cli.returncode == 0, cli.stderr
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model"] == "dense-ae"
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1, missing.stderr
    assert missing.stderr.startswith(f"Error: hf://{REPO_ID}@no-such-tag: cannot download it (RevisionNotFound")

    # offline, with the server gone: the cached snapshot is read, and what was never cached is one line
    offline = python(["-c", LOAD, str(arrays), f"hf://{REPO_ID}"], hub_env(home, None, offline=True), tmp_path)
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)[f"hf://{REPO_ID}"]["folder"] == latest["folder"]
    never = python(["-m", "aekit", "evaluate", "hf://test-org/never-seen"], hub_env(home, None, offline=True),
                   tmp_path)
    assert never.returncode == 1 and never.stderr.count("\n") == 1, never.stderr
    assert never.stderr.startswith("Error: hf://test-org/never-seen: cannot download it")
