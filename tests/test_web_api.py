"""The explorer's HTTP API (``aekit serve``), through FastAPI's TestClient on tiny trained runs.

Every endpoint on a 2-D VAE, an 8-D dense AE (the PCA path), a denoising run (the extra
output), a conditional VAE (labels), a U-Net denoiser whose latent is too large to echo and a
2x super-resolution run (input and output sizes differ); then bad requests, each of which must
get its own 4xx and never a 500.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import threading
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import aekit
import aekit.web.app
from aekit.data import load_dataset
from aekit.errors import CheckpointError, ConfigError
from aekit.latent import encode_dataset
from aekit.web import create_app, find_runs
from aekit.web.explorer import MAX_STEPS, MAX_UPLOAD_BYTES, MAX_Z_ECHO

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from fastapi.testclient import TestClient

CVAE_OPTIONS = {"channels": (8, 16), "hidden": 32, "latent_dim": 4}
UNET_OPTIONS = {"channels": (8,)}  # latent 8 x 14 x 14 = 1,568 numbers: above MAX_Z_ECHO
SR_OPTIONS = {"channels": (8,)}


@pytest.fixture(scope="module")
def runs(make_run):
    return {
        "vae": make_run("vae"),
        "ae8": make_run("dense-ae"),
        "denoise": make_run("dense-ae", task="denoise", noise="gaussian:0.5"),
        "cvae": make_run("cvae", model_options=CVAE_OPTIONS),
        "unet": make_run("dn", task="denoise", noise="gaussian:0.5", model_options=UNET_OPTIONS),
        "sr": make_run("sr-lesson", task="super-resolution", scale=2, model_options=SR_OPTIONS),
    }


@pytest.fixture(scope="module")
def client(runs):
    # ids follow the order given: 0 vae, 1 ae8, 2 denoise, 3 cvae, 4 unet, 5 sr
    with TestClient(create_app(list(runs.values()))) as c:
        yield c


RUN = {"vae": "0", "ae8": "1", "denoise": "2", "cvae": "3", "unet": "4", "sr": "5"}


@pytest.fixture(scope="module")
def test_set():
    return load_dataset("mnist-5k", seed=0).test


def decode_uri(uri: str) -> np.ndarray:
    """data:image/png;base64,... -> float array (H, W) or (H, W, 3) in [0, 1]"""
    head, data = uri.split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))), dtype=np.float32) / 255.0


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def upload(client, data: bytes, run: str, **form):
    return client.post(f"/api/reconstruct?run={run}", files={"file": ("drawing.png", data, "image/png")}, data=form)


# -- the page -------------------------------------------------------------------------------

def test_page_and_its_files_are_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # Nothing on the page comes from elsewhere: it must work offline.
    html = page.text + client.get("/static/app.js").text + client.get("/static/style.css").text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert client.get("/static/../explorer.py").status_code == 404
    assert client.get("/docs").status_code == 404  # Swagger would load scripts from a CDN


def test_runs_are_listed_by_id_and_picked_by_id_or_name(client, runs):
    listed = client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in listed] == ["0", "1", "2", "3", "4", "5"]
    assert [r["model"] for r in listed] == ["vae", "dense-ae", "dense-ae", "cvae", "dn", "sr-lesson"]
    by_name = client.get(f"/api/run?run={runs['ae8'].name}").json()
    assert by_name["id"] == RUN["ae8"] and by_name["latent_dim"] == 8


def test_the_server_says_its_device_and_refuses_cuda_it_lacks(client, runs):
    listed = client.get("/api/runs").json()
    assert listed["device"] == "cpu" and listed["gpu_memory_peak_bytes"] is None  # no CUDA used here
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cuda asked for, but torch sees no CUDA GPU"):
            create_app([runs["vae"]], device="cuda")


@pytest.mark.parametrize("path", ["/api/run", "/api/points", "/api/image/0", "/api/sample"])
def test_unknown_run_is_404(client, path):
    for run in ("99", "../..", "/etc", ""):
        assert client.get(f"{path}?run={run}").status_code == 404
    assert client.post("/api/decode?run=nope", json={"point": [0, 0]}).status_code == 404


# -- the map --------------------------------------------------------------------------------

def test_points_of_a_2d_latent_are_the_test_means_themselves(client, runs, test_set):
    res = client.get(f"/api/points?run={RUN['vae']}").json()
    assert res["method"] == "identity" and "2-D latent space" in res["projection"]
    assert res["test_size"] == len(test_set) == len(res["points"])
    assert res["classes"] == [str(d) for d in range(10)]
    model = aekit.load(runs["vae"])
    means = encode_dataset(model, test_set.images)  # (N, 2)
    for p in res["points"][::50]:
        assert p["label"] == int(test_set.labels[p["index"]])
        np.testing.assert_allclose([p["x"], p["y"]], means[p["index"]].numpy(), atol=1e-3)
    sliders = res["sliders"]
    assert sliders["basis"] == "latent" and sliders["names"] == ["z1", "z2"]
    for lo, hi in sliders["ranges"]:  # a VAE's sliders reach at least +-3 (the prior)
        assert lo <= -3 and hi >= 3


def test_points_of_an_8d_latent_are_a_pca_projection(client):
    res = client.get(f"/api/points?run={RUN['ae8']}").json()
    assert res["method"] == "pca" and "principal axes of the 8-D" in res["projection"]
    assert len(res["sliders"]["names"]) == 8  # one per dimension up to 8
    xs = np.array([p["x"] for p in res["points"]])
    assert abs(xs.mean()) < 1e-2  # PCA coordinates are centred


def test_points_are_capped(runs):
    with TestClient(create_app([runs["vae"]], max_points=100)) as c:
        pts = c.get("/api/points").json()["points"]
    idx = [p["index"] for p in pts]
    assert len(pts) == 100 and idx == sorted(set(idx)) and 0 <= idx[0] and idx[-1] < 500


def test_hover_image_is_the_test_image(client, test_set):
    res = client.get("/api/image/7").json()
    assert res["label"] == int(test_set.labels[7]) and res["class"] == str(res["label"])
    np.testing.assert_allclose(decode_uri(res["image"]), test_set.images[7, 0].numpy(), atol=1 / 255)
    assert client.get("/api/image/500").status_code == 404
    assert client.get("/api/image/-1").status_code == 404
    assert client.get("/api/image/abc").status_code == 422


# -- decoding -------------------------------------------------------------------------------

def test_decode_z_is_the_models_decode(client, runs):
    z = [0.5, -1.25]
    res = client.post(f"/api/decode?run={RUN['vae']}", json={"z": z}).json()
    expected = aekit.load(runs["vae"]).decode(torch.tensor([z]))[0, 0].detach().numpy()
    np.testing.assert_allclose(decode_uri(res["image"]), expected, atol=1 / 255 + 1e-6)
    assert res["z"] == z and res["point"] == z and res["coords"] == z  # identity map, latent sliders


def test_decode_point_lands_where_it_was_clicked(client):
    res = client.post(f"/api/decode?run={RUN['ae8']}", json={"point": [0.7, -0.4]}).json()
    assert len(res["z"]) == 8
    np.testing.assert_allclose(res["point"], [0.7, -0.4], atol=1e-3)
    again = client.post(f"/api/decode?run={RUN['ae8']}", json={"coords": res["coords"]}).json()
    np.testing.assert_allclose(again["z"], res["z"], atol=1e-3)
    assert again["image"] == res["image"]


def test_large_latents_travel_as_slider_coordinates(client):
    pts = client.get(f"/api/points?run={RUN['unet']}").json()
    assert pts["latent_dim"] > MAX_Z_ECHO and pts["sliders"]["basis"] == "pca"
    res = client.post(f"/api/decode?run={RUN['unet']}", json={"coords": pts["sliders"]["start"]}).json()
    assert res["z"] is None and len(res["coords"]) == 8 and res["image"].startswith("data:image/png")
    assert client.post(f"/api/decode?run={RUN['unet']}", json={"z": [0.0] * pts["latent_dim"]}).status_code == 200


def test_conditional_models_need_a_label_and_others_refuse_one(client):
    cvae = f"/api/decode?run={RUN['cvae']}"
    images = {k: client.post(cvae, json={"point": [0, 0], "label": k}).json()["image"] for k in (1, 7)}
    assert images[1] != images[7]  # the label changes the image
    assert client.post(cvae, json={"point": [0, 0]}).status_code == 422
    assert client.post(cvae, json={"point": [0, 0], "label": 10}).status_code == 422
    assert client.post(f"/api/decode?run={RUN['vae']}", json={"point": [0, 0], "label": 1}).status_code == 409


@pytest.mark.parametrize("inline_below_ms", [1000.0, 0.0])
def test_quick_decodes_are_answered_on_the_event_loop_and_slow_ones_in_the_pool(runs, monkeypatch,
                                                                                 inline_below_ms):
    # A run decodes in the thread pool until one of its decodes took under INLINE_DECODE_MS (set
    # high here, so that a busy machine cannot make the test flaky), and on the event loop after;
    # with the limit at 0 every decode is slow, and stays in the pool.  The answers are the same.
    from aekit.web.explorer import RunExplorer

    monkeypatch.setattr(aekit.web.app, "INLINE_DECODE_MS", inline_below_ms)
    threads = []
    decode = RunExplorer.decode

    def recorded(self, **kwargs):
        threads.append(threading.current_thread().name)
        return decode(self, **kwargs)

    monkeypatch.setattr(RunExplorer, "decode", recorded)
    with TestClient(create_app([runs["vae"]])) as c:
        assert c.get("/api/points").status_code == 200  # loads the run, as the page does first
        answers = [c.post("/api/decode", json={"point": [0.3, -0.2]}).json() for _ in range(3)]
        assert c.post("/api/decode", json={"point": [0, 0], "label": 1}).status_code == 409  # either way
    assert answers[0] == answers[1] == answers[2] and answers[0]["image"].startswith("data:image/png")
    in_pool = [name.startswith("AnyIO worker") for name in threads]
    assert in_pool == ([True, False, False, False] if inline_below_ms else [True] * 4)


BAD_DECODES = [
    {"z": "0.5"},
    {"z": ["a", "b"]},
    {"z": [True, False]},
    {"z": [0.1]},  # wrong length
    {"z": [0.1, 0.2, 0.3]},
    {"z": []},
    {"z": [1e4, 0]},  # out of range
    {"z": [[0.1, 0.2]]},
    {"point": [1.0]},
    {"point": [1, 2, 3]},
    {"point": [-1001, 0]},
    {"coords": [0.0]},
    {"z": [0, 0], "point": [0, 0]},  # two at once
    {},
    {"z": [0, 0], "extra": 1},
    {"z": [0, 0], "label": "1"},
    {"z": [0, 0], "label": 1.5},
    [0, 0],
    "z",
    None,
]


@pytest.mark.parametrize("body", BAD_DECODES, ids=[json.dumps(b) for b in BAD_DECODES])
def test_bad_decode_bodies_are_422(client, body):
    res = client.post(f"/api/decode?run={RUN['vae']}", json=body)
    assert res.status_code == 422, res.text
    assert "detail" in res.json()


@pytest.mark.parametrize("raw", [b'{"z": [NaN, 0]}', b'{"z": [Infinity, 0]}', b'{"z": [1e999, 0]}',
                                 b'{"z": [0, 0', b"\xff\xfe", b""])
def test_non_finite_or_broken_json_is_422(client, raw):
    res = client.post("/api/decode", content=raw, headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text


def test_json_bodies_are_capped_while_read(client):
    huge = b'{"z": [' + b"0," * (1_100_000) + b"0]}"
    assert client.post("/api/decode", content=huge, headers={"content-type": "application/json"}).status_code == 413

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        yield b'{"z": ['
        for _ in range(300):
            yield b"0," * 5000
        yield b"0]}"

    res = client.post("/api/decode", content=chunks(), headers={"content-type": "application/json"})
    assert res.status_code == 413


# -- the drawing pad ------------------------------------------------------------------------

def test_an_upload_of_a_test_digit_lands_on_its_own_map_point(client, test_set):
    k = 12
    digit = test_set.images[k, 0].numpy()  # (28, 28)
    big = np.kron(digit, np.ones((10, 10), dtype=np.float32))  # 280 x 280, as the pad sends
    res = upload(client, png_bytes(big), RUN["vae"]).json()
    assert res["task"] == "reconstruct" and set(res) >= {"input", "reconstruction", "z", "point"}
    # area-averaging 10x10 blocks gives the digit back exactly, so the code is the map's
    np.testing.assert_allclose(decode_uri(res["input"]), digit, atol=1 / 255)
    point = next(p for p in client.get("/api/points").json()["points"] if p["index"] == k)
    np.testing.assert_allclose(res["point"], [point["x"], point["y"]], atol=2e-3)
    assert decode_uri(res["reconstruction"]).shape == (28, 28)


def test_an_rgb_upload_of_any_size_is_resized_to_grey(client):
    rgb = Image.new("RGB", (97, 53), (200, 30, 30))
    buf = io.BytesIO()
    rgb.save(buf, "JPEG")
    res = upload(client, buf.getvalue(), RUN["ae8"])
    assert res.status_code == 200
    assert decode_uri(res.json()["input"]).shape == (28, 28)


def test_a_denoise_run_also_shows_its_output(client, test_set):
    digit = test_set.images[3, 0].numpy()
    res = upload(client, png_bytes(digit), RUN["denoise"]).json()
    assert res["task"] == "denoise" and {"clean", "input", "output", "reconstruction"} <= set(res)
    clean, noisy = decode_uri(res["clean"]), decode_uri(res["input"])
    np.testing.assert_allclose(clean, digit, atol=1 / 255)
    assert np.abs(noisy - clean).mean() > 0.1  # the run's gaussian:0.5 noise went in
    assert res["output"] != res["input"]
    again = upload(client, png_bytes(digit), RUN["denoise"]).json()
    assert again["input"] == res["input"]  # seeded: the same drawing gets the same noise


def test_a_super_resolution_run_sees_the_small_image(client, test_set):
    digit = test_set.images[5, 0].numpy()
    res = upload(client, png_bytes(digit), RUN["sr"]).json()
    assert res["task"] == "super-resolution"
    assert decode_uri(res["clean"]).shape == (28, 28) and decode_uri(res["output"]).shape == (28, 28)
    small = decode_uri(res["input"])
    assert small.shape == (14, 14)
    np.testing.assert_allclose(small, digit.reshape(14, 2, 14, 2).mean(axis=(1, 3)), atol=1 / 255 + 1e-6)
    pts = client.get(f"/api/points?run={RUN['sr']}").json()
    assert len(pts["points"]) == len(test_set) and pts["method"] == "pca"
    info = client.get(f"/api/run?run={RUN['sr']}").json()
    assert info["in_shape"] == [1, 14, 14] and info["out_shape"] == [1, 28, 28] and info["latent_dim"] == 1568


def test_conditional_reconstruct_takes_the_label_as_a_form_field(client):
    data = png_bytes(np.zeros((28, 28), np.float32))
    assert upload(client, data, RUN["cvae"]).status_code == 422
    assert upload(client, data, RUN["cvae"], label="3").status_code == 200
    assert upload(client, data, RUN["cvae"], label="three").status_code == 422
    assert upload(client, data, RUN["vae"], label="3").status_code == 409


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_uploads_get_their_own_status(client):
    run = RUN["vae"]
    assert upload(client, b"hello, not an image", run).status_code == 415
    assert upload(client, b"", run).status_code == 415
    good = png_bytes(np.zeros((64, 64), np.float32))
    assert upload(client, good[: len(good) // 2], run).status_code == 422  # truncated pixel data
    assert upload(client, _png_claiming(5000, 5000), run).status_code == 413  # 25 MP: over aekit's limit
    assert upload(client, _png_claiming(100_000, 100_000), run).status_code == 413  # over Pillow's too
    too_big = b"\x89PNG" + b"\0" * (MAX_UPLOAD_BYTES + 1)
    assert upload(client, too_big, run).status_code == 413
    assert client.post(f"/api/reconstruct?run={run}", data={"label": "1"}).status_code == 422  # no file
    assert client.post(f"/api/reconstruct?run={run}", json={"file": "x"}).status_code == 422


# -- interpolation and sampling -------------------------------------------------------------

def test_interpolation_runs_from_a_to_b(client):
    run = RUN["vae"]
    res = client.post(f"/api/interpolate?run={run}", json={"a": {"z": [-2, 0]}, "b": {"point": [2, 1]},
                                                            "steps": 5}).json()
    assert len(res["images"]) == 5 and res["z"][0] == [-2, 0] and res["z"][-1] == [2, 1]
    np.testing.assert_allclose(res["z"][2], [0, 0.5], atol=1e-5)
    end = client.post(f"/api/decode?run={run}", json={"z": [2, 1]}).json()
    assert res["images"][-1] == end["image"]
    by_index = client.post(f"/api/interpolate?run={run}", json={"a": {"index": 0}, "b": {"index": 9},
                                                                 "steps": 3, "spherical": True}).json()
    pts = {p["index"]: p for p in client.get(f"/api/points?run={run}").json()["points"]}
    np.testing.assert_allclose(by_index["points"][0], [pts[0]["x"], pts[0]["y"]], atol=2e-3)
    np.testing.assert_allclose(by_index["points"][-1], [pts[9]["x"], pts[9]["y"]], atol=2e-3)


@pytest.mark.parametrize("body,status", [
    ({"a": {"index": 0}, "b": {"index": 1}, "steps": 1}, 422),
    ({"a": {"index": 0}, "b": {"index": 1}, "steps": MAX_STEPS + 1}, 422),
    ({"a": {"index": 0}, "b": {"index": 1}, "steps": "5"}, 422),
    ({"a": {"index": 0}}, 422),
    ({"a": {"index": 0, "z": [0, 0]}, "b": {"index": 1}}, 422),
    ({"a": {"index": 0}, "b": {"index": 10_000}}, 404),
    ({"a": {"index": 0}, "b": {"index": -1}}, 404),
    ({"a": {"z": [0, 0]}, "b": {"z": [0, 1]}, "spherical": True}, 422),  # slerp from the origin
    ({"a": {"z": [0, 0]}, "b": {"z": [0, 1]}, "label": 2}, 409),
    ({"a": 3, "b": 4}, 422),
])
def test_bad_interpolations(client, body, status):
    assert client.post(f"/api/interpolate?run={RUN['vae']}", json=body).status_code == status


def test_sampling_the_prior(client):
    res = client.get(f"/api/sample?run={RUN['vae']}&n=4&seed=5").json()
    assert len(res["images"]) == 4 and len(res["z"]) == 4 and len(res["points"]) == 4
    assert res == client.get(f"/api/sample?run={RUN['vae']}&n=4&seed=5").json()  # seeded
    decoded = client.post(f"/api/decode?run={RUN['vae']}", json={"z": res["z"][1]}).json()
    assert decoded["image"] == res["images"][1]  # the image is the decode of the z it reports
    cond = client.get(f"/api/sample?run={RUN['cvae']}&n=3&label=6").json()
    assert cond["labels"] == [6, 6, 6]
    assert client.get(f"/api/sample?run={RUN['cvae']}&n=3").json()["labels"] == [0, 1, 2]


@pytest.mark.parametrize("query,status", [
    (f"run={RUN['ae8']}", 409),  # a plain AE has no prior
    (f"run={RUN['vae']}&label=1", 409),  # not conditional
    (f"run={RUN['cvae']}&label=10", 422),
    (f"run={RUN['vae']}&n=0", 422),
    (f"run={RUN['vae']}&n=65", 422),
    (f"run={RUN['vae']}&n=two", 422),
    (f"run={RUN['vae']}&seed=-1", 422),
])
def test_bad_samples(client, query, status):
    assert client.get(f"/api/sample?{query}").status_code == status


# -- the run --------------------------------------------------------------------------------

def test_run_info_has_config_flags_and_metrics(client):
    info = client.get(f"/api/run?run={RUN['vae']}").json()
    assert info["flags"] == {"variational": True, "generative": True, "conditional": False}
    assert info["config"]["model"] == "vae" and info["in_shape"] == [1, 28, 28]
    assert len(info["metrics"]) == 1 and info["metrics"][0]["epoch"] == 1
    assert "psnr" in json.dumps(info["test_metrics"]).lower()
    dn = client.get(f"/api/run?run={RUN['denoise']}").json()
    assert dn["task"] == "denoise" and dn["flags"]["generative"] is False


def test_report_is_served_from_the_run_folder_only(runs, tmp_path):
    run = tmp_path / "with-report"
    shutil.copytree(runs["vae"], run)
    (run / "report.html").write_text("<html><img src='figure.png'></html>")
    (run / "figure.png").write_bytes(png_bytes(np.zeros((4, 4), np.float32)))
    (run / ".hidden.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"x")
    no_report = tmp_path / "no-report"
    shutil.copytree(runs["ae8"], no_report)
    (no_report / "report.html").unlink(missing_ok=True)
    with TestClient(create_app([run, no_report])) as c:
        first = c.get("/report", follow_redirects=False)
        assert first.status_code == 307 and first.headers["location"] == "/report/0/"
        page = c.get("/report/0/")
        assert page.status_code == 200 and "figure.png" in page.text
        assert c.get("/report/0/figure.png").status_code == 200
        for name in ("config.json", ".hidden.png", "..%2Fsecret.png", "model.safetensors"):
            assert c.get(f"/report/0/{name}").status_code == 404, name
        assert c.get("/report/1/").status_code == 404
        assert c.get("/report/9/").status_code == 404
        assert [r["has_report"] for r in c.get("/api/runs").json()["runs"]] == [True, False]


def test_metrics_with_nan_still_answer(runs, tmp_path):
    run = tmp_path / "nan-run"
    shutil.copytree(runs["vae"], run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train": {"total": NaN}, "val": {"total": 1.0}}\n')
    with TestClient(create_app([run])) as c:
        info = c.get("/api/run").json()
    assert info["metrics"][0]["train"]["total"] is None


# -- serving safely -------------------------------------------------------------------------

def test_foreign_host_headers_are_refused(runs):
    with TestClient(create_app([runs["vae"]], allowed_hosts=["127.0.0.1", "localhost"])) as c:
        assert c.get("/api/runs").status_code == 400  # TestClient's Host is "testserver"
        assert c.get("/api/runs", headers={"host": "127.0.0.1:8000"}).status_code == 200


def test_broken_run_folders_are_skipped_or_refused(runs, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="no run to serve"):
        create_app([broken])
    with TestClient(create_app([broken, runs["vae"]])) as c:
        listed = c.get("/api/runs").json()["runs"]
        assert [r["model"] for r in listed] == [None, "vae"]  # listed, with why, but not served
        assert "config.json" in listed[0]["broken"] and listed[1]["broken"] is None


def test_a_run_with_corrupt_weights_says_so(runs, tmp_path):
    run = tmp_path / "bad-weights"
    shutil.copytree(runs["vae"], run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        create_app([run])
    with TestClient(create_app([run, runs["ae8"]])) as c:
        res = c.get("/api/points?run=0")
    assert res.status_code == 409 and "this run is broken" in res.json()["error"]


def test_find_runs(runs, tmp_path):
    assert find_runs(runs["vae"]) == [runs["vae"]]
    for name in ("b", "a"):
        shutil.copytree(runs["vae"], tmp_path / "many" / name)
    (tmp_path / "many" / "notes").mkdir()
    assert [p.name for p in find_runs(tmp_path / "many")] == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no run folders"):
        find_runs(tmp_path / "empty")


def test_cli_reports_a_busy_port_in_one_line(runs):
    import socket

    from click.testing import CliRunner

    from aekit.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(runs["vae"]), "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen on 127.0.0.1" in result.output and "Traceback" not in result.output
