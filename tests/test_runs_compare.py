"""`aekit runs` (a folder's runs as a table, hostile folders included), `aekit compare` (one
self-contained HTML page) and the explorer's run picker showing the same table."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from aekit.app import runs as run_table
from aekit.app.compare import render_comparison
from aekit.cli import main
from aekit.errors import ConfigError
from aekit.run.lock import RunLock

EVIL_NAME = "\x1b[31mred\x1b[0m"  # a folder named with terminal escape codes


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def edit_json(path: Path, **changes) -> None:
    raw = json.loads(path.read_text())
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            raw[section][key] = value
        else:
            raw[section] = value
    path.write_text(json.dumps(raw))


@pytest.fixture(scope="module")
def trained(make_run) -> dict[str, Path]:
    # the same arguments as tests/test_web_browser.py, so a session running both trains each once
    return {"vae": make_run("vae"), "denoise": make_run("dense-ae", task="denoise", noise="gaussian:0.5")}


@pytest.fixture(scope="module")
def folder(trained, tmp_path_factory) -> Path:
    """Two finished runs, an unfinished one, six broken ones and two folders that are not runs."""
    root = tmp_path_factory.mktemp("runs")
    for name, source in trained.items():
        shutil.copytree(source, root / name)
    shutil.copytree(trained["vae"], root / "vae-longer")
    edit_json(root / "vae-longer" / "config.json", train__epochs=3)  # 1 of 3 epochs done
    shutil.copytree(trained["vae"], root / "bad-weights")
    weights = root / "bad-weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for ckpt in (root / "bad-weights" / "checkpoints").iterdir():  # no whole copy to fall back on
        shutil.rmtree(ckpt)
    shutil.copytree(trained["vae"], root / "bad-metrics")
    (root / "bad-metrics" / "test_metrics.json").write_text("[1, 2]")
    shutil.copytree(trained["vae"], root / "unknown-model")
    edit_json(root / "unknown-model" / "config.json", model="no-such-model")
    (root / "bad-json").mkdir()
    (root / "bad-json" / "config.json").write_text("{")
    (root / "huge-config").mkdir()
    (root / "huge-config" / "config.json").write_bytes(b" " * (2 << 20))
    (root / "no-config" / "checkpoints").mkdir(parents=True)
    (root / EVIL_NAME).mkdir()
    (root / EVIL_NAME / "config.json").write_text('{"format_version": 1, "model": "\\u001b[2J"}')
    (root / "plots").mkdir()
    (root / "plots" / "figure.png").write_bytes(b"\x89PNG")
    (root / "notes.txt").write_text("not a run")
    return root


BROKEN = {"bad-weights", "bad-metrics", "unknown-model", "bad-json", "huge-config", "no-config", EVIL_NAME}


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


# -- the table ------------------------------------------------------------------------------------

def test_every_run_is_a_row_and_broken_folders_are_rows_with_a_reason(folder, trained):
    rows = by_name(run_table.list_runs(folder))
    assert set(rows) == {"vae", "denoise", "vae-longer", *BROKEN}  # not plots/, not notes.txt
    assert {n: r["status"] for n, r in rows.items() if r["status"] != "broken"} == {
        "vae": "finished", "denoise": "finished", "vae-longer": "interrupted"}
    assert {n for n, r in rows.items() if r["status"] == "broken"} == BROKEN
    for name in BROKEN:
        reason = rows[name]["reason"]
        assert reason and "\n" not in reason and len(reason) <= run_table.MAX_REASON
        assert str(folder) not in reason  # files are named relative to the run
    assert "safetensors" in rows["bad-weights"]["reason"]
    assert rows["bad-metrics"]["reason"].startswith("test_metrics.json")
    assert "no-such-model" in rows["unknown-model"]["reason"]
    assert rows["bad-json"]["reason"].startswith("config.json: not valid JSON")
    assert "too large" in rows["huge-config"]["reason"]
    assert rows["vae-longer"]["reason"] == "1 of 3 epochs done"


def test_a_row_holds_the_runs_settings_metrics_and_time(folder, trained):
    rows = by_name(run_table.list_runs(folder))
    vae, denoise = rows["vae"], rows["denoise"]
    metrics = json.loads((trained["vae"] / "test_metrics.json").read_text())
    history = [json.loads(line) for line in (trained["vae"] / "metrics.jsonl").read_text().splitlines()]
    assert (vae["model"], vae["dataset"], vae["task"], vae["epochs"], vae["epochs_planned"]) == \
        ("vae", "mnist-5k", "reconstruct", 1, 1)
    assert (vae["elbo"], vae["psnr"], vae["ssim"], vae["bce"]) == \
        (metrics["elbo"], metrics["psnr_db"], metrics["ssim"], metrics["bce_per_pixel"])
    assert vae["time"] == pytest.approx(sum(r["seconds"] for r in history))
    assert vae["gain"] is None and vae["reason"] is None
    # a plain denoiser has no ELBO; it has a gain over its best baseline on the same images
    den = json.loads((trained["denoise"] / "test_metrics.json").read_text())
    assert denoise["elbo"] is None and denoise["task"] == "denoise"
    assert denoise["gain"] == pytest.approx(den["psnr_db"] - max(b["psnr"] for b in den["baselines"].values()))


def test_a_run_being_trained_shows_as_training(folder):
    lock = RunLock(folder / "vae-longer").acquire()
    try:
        assert run_table.run_row(folder / "vae-longer")["status"] == "training"
    finally:
        lock.release()
    assert run_table.run_row(folder / "vae-longer")["status"] == "interrupted"


def test_sorting_by_a_column_either_way_puts_missing_values_last(folder):
    rows = run_table.list_runs(folder, sort="psnr")
    psnrs = [r["psnr"] for r in rows]
    known = [p for p in psnrs if p is not None]
    assert len(known) == 3 and known == sorted(known) and psnrs[:3] == known
    rows = run_table.list_runs(folder, sort="-psnr")
    assert [r["psnr"] for r in rows][:3] == sorted(known, reverse=True)
    assert [r["name"] for r in run_table.list_runs(folder)] == sorted(r["name"] for r in rows)
    statuses = [r["status"] for r in run_table.list_runs(folder, sort="status")]
    assert statuses == sorted(statuses, key=run_table.STATUSES.index)


def test_an_unknown_sort_key_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match="sort by one of name, model, dataset, task, epochs, elbo, psnr"):
        run_table.check_sort_key("-speed")


def test_the_runs_command_prints_the_table_and_json(folder):
    result = cli("runs", folder, "--sort", "-psnr")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "model", "dataset", "task", "epochs", "ELBO", "PSNR", "SSIM", "BCE/px",
                                "vs", "baseline", "time", "status"]
    table = [line for line in lines[1:] if not line.startswith(("broken:", "interrupted:"))]
    assert len(table) == 3 + len(BROKEN)
    assert "\x1b" not in result.output  # escape codes in a name or a file never reach the terminal
    assert "?[31mred?[0m" in result.output
    assert any(line.startswith("vae-longer ") and "1/3" in line and line.endswith("interrupted") for line in table)
    assert f"continue with: aekit train --resume {folder / 'vae-longer'}" in result.output
    assert sum(line.startswith("broken: ") for line in lines) == len(BROKEN)
    as_json = cli("runs", folder, "--json")
    assert as_json.exit_code == 0
    assert by_name(json.loads(as_json.output)) == by_name(run_table.list_runs(folder))


def test_the_runs_command_refuses_bad_arguments_in_one_line(folder, tmp_path):
    for args, expected in (((folder, "--sort", "speed"), "--sort 'speed': no such column; sort by one of"),
                           ((tmp_path / "nowhere",), "no such folder")):
        result = cli("runs", *args)
        assert result.exit_code == 1
        assert len(result.output.strip().splitlines()) == 1 and expected in result.output
    (tmp_path / "empty").mkdir()
    result = cli("runs", tmp_path / "empty")
    assert result.exit_code == 0 and result.output.startswith("no runs in")
    assert json.loads(cli("runs", tmp_path / "empty", "--json").output) == []


def test_a_run_folder_itself_is_a_table_of_one(trained):
    assert [r["name"] for r in run_table.list_runs(trained["vae"])] == [trained["vae"].name]


@pytest.mark.parametrize("seconds, long, short", [
    (0, "0.0 s", "0.0s"),
    (42.04, "42.0 s", "42.0s"),
    (59.94, "59.9 s", "59.9s"),
    (60, "1 min 00 s", "1m00s"),
    (125.4, "2 min 05 s", "2m05s"),
    (3599.4, "59 min 59 s", "59m59s"),  # rounded to the second first: still under the hour
    (3599.5, "1 h 00 min", "1h00m"),
    (3600 + 61 * 60 + 59, "2 h 01 min", "2h01m"),  # past an hour the seconds are dropped, not rounded
])
def test_a_duration_reads_the_same_in_both_styles(seconds, long, short):
    """The page (`aekit compare`) and the terminal table (`aekit runs`) say the same thing, at their widths."""
    assert run_table.format_duration(seconds, style="long") == long
    assert run_table.format_duration(seconds, style="short") == short


def test_an_unknown_duration_style_is_refused():
    with pytest.raises(ValueError, match="expected one of long, short"):
        run_table.format_duration(1.0, style="tiny")


# -- compare --------------------------------------------------------------------------------------

def test_compare_writes_one_self_contained_page(folder, tmp_path):
    out = tmp_path / "compare.html"
    result = cli("compare", folder / "vae", folder / "denoise", folder / "vae-longer", "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert not re.search(r"https?://|url\(|<script|<link", page)  # fetches nothing
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sources and all(s.startswith(("data:image/png;base64,", "#")) for s in sources)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # one figure per loss part: total (every run), recon, kl (the VAEs)
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert [p.name for p in tmp_path.iterdir()] == ["compare.html"]  # no temporary file left behind
    for name in ("vae", "denoise", "vae-longer", "interrupted", "PSNR over the best baseline (dB)"):
        assert name in page


def test_the_best_value_of_each_row_is_marked(folder):
    page = render_comparison([folder / "vae", folder / "denoise"])
    vae, denoise = (json.loads((folder / n / "test_metrics.json").read_text()) for n in ("vae", "denoise"))

    def cells(label: str) -> list[str]:
        row = re.search(rf"<tr><td>{re.escape(label)}</td>(.*?)</tr>", page).group(1)
        return re.findall(r"<td([^>]*)>", row)

    best_psnr = 0 if vae["psnr_db"] > denoise["psnr_db"] else 1
    assert ["best" in c for c in cells("PSNR (dB)")] == [i == best_psnr for i in range(2)]
    best_bce = 0 if vae["bce_per_pixel"] < denoise["bce_per_pixel"] else 1  # lower is better
    assert ["best" in c for c in cells("BCE per pixel")] == [i == best_bce for i in range(2)]
    assert not any("best" in c for c in cells("training total (last epoch)"))  # no direction: not marked
    assert "best" in "".join(cells("validation total (last epoch)"))
    assert "model.beta" in page  # a setting only the VAE has differs


def test_compare_refuses_to_overwrite_without_the_flag_and_names_a_broken_run(folder, tmp_path):
    out = tmp_path / "compare.html"
    out.write_text("mine")
    result = cli("compare", folder / "vae", folder / "denoise", "-o", out)
    assert result.exit_code == 1 and "already exists; pass --overwrite" in result.output
    assert out.read_text() == "mine"
    assert cli("compare", folder / "vae", folder / "denoise", "-o", out, "--overwrite").exit_code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    result = cli("compare", folder / "vae", folder / "bad-json", "-o", tmp_path / "other.html")
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "config.json: not valid JSON" in result.output and "leave it out" in result.output
    assert not (tmp_path / "other.html").exists()
    result = cli("compare", folder / "vae", "-o", tmp_path / "page.txt")
    assert result.exit_code == 1 and "end the name in .html" in result.output


# -- the explorer ---------------------------------------------------------------------------------

def test_the_runs_table_endpoint_answers_rows_without_paths(trained):
    from fastapi.testclient import TestClient

    from aekit.web import create_app

    client = TestClient(create_app([trained["vae"], trained["denoise"]]))
    answer = client.get("/api/runs/table").json()
    assert [r["id"] for r in answer["runs"]] == ["0", "1"]
    assert [m["key"] for m in answer["metrics"]] == ["elbo", "psnr", "ssim", "bce", "gain"]
    assert [r["status"] for r in answer["runs"]] == ["finished", "finished"]
    assert all("path" not in r for r in answer["runs"])
    assert str(trained["vae"].parent) not in json.dumps(answer)


@pytest.mark.browser
def test_the_run_picker_shows_the_table_and_switches_runs(trained):
    pytest.importorskip("uvicorn")
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS, Page

    from aekit.web import create_app
    from aekit.web.background import serve_in_thread

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run browser tests")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    app = create_app([trained["vae"], trained["denoise"]], allowed_hosts=["127.0.0.1", "localhost"])
    with serve_in_thread(app) as base, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = Page(browser, base)
        try:
            page.open()
            page.page.click("#runs-button")
            page.page.wait_for_selector("#runs-dialog[open] #runs-table")
            headers = page.page.locator("#runs-table th").all_text_contents()
            assert headers == ["run", "model", "dataset", "task", "epochs", "ELBO", "PSNR", "SSIM", "BCE/px",
                               "vs baseline", "time", "status"]
            rows = page.page.locator("#runs-table tbody tr")
            assert rows.count() == 2
            first = rows.nth(0).locator("td").all_text_contents()
            assert first[1:5] == ["vae", "mnist-5k", "reconstruct", "1"] and first[-1] == "finished"
            psnr = json.loads((trained["vae"] / "test_metrics.json").read_text())["psnr_db"]
            assert first[headers.index("PSNR")] == f"{psnr:.2f}"
            assert "current" in rows.nth(0).get_attribute("class")
            second = rows.nth(1).locator("td").all_text_contents()
            assert second[1:4] == ["dense-ae", "mnist-5k", "denoise"] and second[headers.index("ELBO")] == "–"
            page.screenshot("explorer-runs-table")
            rows.nth(1).locator("button").click()  # choosing a row loads that run
            page.page.wait_for_function("() => state.run === '1' && document.body.dataset.ready === '1'")
            assert not page.page.is_visible("#runs-dialog")
            assert "denoise" in page.page.text_content("#run-summary")
            page.check_clean()
        finally:
            page.context.close()
            browser.close()
