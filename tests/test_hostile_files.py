"""Image files and output folders as a hostile (or merely unlucky) user hands them over.

Odd images are either read correctly or refused in one line naming the file; extreme shapes
go through `aekit denoise` / `aekit upscale` in bounded memory; and no command writes over an
input, or over an existing file without --overwrite.  The CLI cases run the real executable
(`python -m aekit`) under a 2 GiB address-space cap (torch imports and runs a tiny model well
within it), and check that every file that was there before is unchanged afterwards.
"""

from __future__ import annotations

import hashlib
import io
import os
import resource
import stat
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from aekit.app.apply import (
    SHEET_MAX_PIXELS,
    SHEET_MAX_WIDTH,
    apply_tiled,
    before_after_sheet,
    sheet_panel_sizes,
)
from aekit.data import load_image
from aekit.data.images import MAX_PIXELS
from aekit.errors import DataError
from aekit.fileio import atomic_write_bytes

SRC = Path(__file__).resolve().parents[1] / "src"
MEMORY_CAP = 2 * 2**30  # bytes of address space for each CLI run


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def aekit(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "aekit", *map(str, args)], capture_output=True, text=True,
                          env=env, preexec_fn=_cap_memory, timeout=600, check=False)


def assert_ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def assert_refused(result, *fragments, status: int = 1) -> str:
    """Exit ``status``, no traceback, exactly one stderr line: "Error: ..." holding ``fragments``."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == status, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links not followed)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def unchanged_or_new(before: dict[str, str], after: dict[str, str]) -> bool:
    return all(after.get(name) == digest for name, digest in before.items())


# -- odd image files, made here ---------------------------------------------------------------

RNG = np.random.default_rng(0)


def grey8(h, w):
    return RNG.integers(0, 256, (h, w), dtype=np.uint8)


def png_with_declared_size(path: Path, width: int, height: int) -> Path:
    """A valid 10x10 PNG whose IHDR is patched (CRC fixed) to claim ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("L", (10, 10), 128).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def ico_of_pngs(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """An icon whose pictures are PNGs of ``sizes``; the directory says 256 for any side of 256 or
    more (one byte per side), as real icons do.  Picture k is filled with grey level 10 * (k + 1)."""
    pngs = []
    for k, (w, h) in enumerate(sizes):
        buf = io.BytesIO()
        Image.new("L", (w, h), 10 * (k + 1)).save(buf, "PNG")
        pngs.append(buf.getvalue())
    head, entries, offset = struct.pack("<HHH", 0, 1, len(pngs)), b"", 6 + 16 * len(pngs)
    for (w, h), png in zip(sizes, pngs):
        entries += struct.pack("<BBBBHHII", w % 256, h % 256, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    path.write_bytes(head + entries + b"".join(pngs))
    return path


def make_odd_images(folder: Path) -> dict[str, tuple[Path, tuple[int, int]]]:
    """Images that must be read, each with its expected (H, W) as aekit reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}

    def put(name, image: Image.Image, hw, **save):
        image.save(folder / name, **save)
        made[name] = (folder / name, hw)

    put("grey16.png", Image.fromarray(np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000), (5, 6))
    put("float01.tif", Image.fromarray(np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)), (5, 6))
    put("float-wide.tif", Image.fromarray(np.linspace(-50, 4000, 30, dtype=np.float32).reshape(5, 6)), (5, 6))
    put("int32.tif", Image.fromarray(np.linspace(-7, 1e6, 30).astype(np.int32).reshape(5, 6)), (5, 6))
    palette = Image.fromarray(RNG.integers(0, 4, (7, 9), dtype=np.uint8), "L").convert("P")
    put("palette.png", palette, (7, 9), transparency=0)
    put("cmyk.jpg", Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert("CMYK"), (8, 8))
    frames = [Image.new("L", (9, 7), v) for v in (40, 200)]
    put("anim.gif", frames[0], (7, 9), save_all=True, append_images=frames[1:])
    frames = [Image.new("RGB", (9, 7), (v, v, v)) for v in (40, 200)]
    put("anim.webp", frames[0], (7, 9), save_all=True, append_images=frames[1:], lossless=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored on its side: turn 90 degrees clockwise to show
    marked = np.zeros((12, 30), np.uint8)
    marked[:3, :3] = 255  # top-left corner of the stored picture
    put("phone.jpg", Image.fromarray(marked), (30, 12), exif=exif, quality=100)
    put("row.png", Image.fromarray(grey8(1, 10_000)), (1, 10_000))
    put("column.png", Image.fromarray(grey8(10_000, 1)), (10_000, 1))
    put("small.ico", Image.new("L", (48, 40), 77), (40, 48), sizes=[(16, 16), (48, 40)])
    ico_of_pngs(folder / "icon.ico", [(16, 16), (300, 300), (512, 512)])
    made["icon.ico"] = (folder / "icon.ico", (512, 512))  # read whole; no .ico file can hold it written back
    return made


def make_bad_images(folder: Path) -> dict[str, Path]:
    """Files that must be refused, in one line naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    good = folder / "good-source.png"
    Image.fromarray(grey8(40, 40)).save(good)
    data = good.read_bytes()
    bad = {
        "truncated": folder / "truncated.png",
        "empty": folder / "empty.png",
        "huge-header": png_with_declared_size(folder / "huge-header.png", 100_000, 100_000),
        "over-limit-header": png_with_declared_size(folder / "over-limit.png", 8_000, 8_000),
        "nan-float": folder / "nan.tif",
        "huge-icon": ico_of_pngs(folder / "huge.ico", [(16, 16), (1, 1)]),
        "text": folder / "notes.jpg",
    }
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["empty"].write_bytes(b"")
    Image.fromarray(np.array([[np.nan, 1.0]], dtype=np.float32)).save(bad["nan-float"])
    bad["text"].write_text("not a picture\n")
    # Patch the icon's second PNG to claim 20,000 x 20,000 pixels (400 M, above the limit).
    raw = bytearray(bad["huge-icon"].read_bytes())
    second = raw.index(b"\x89PNG", raw.index(b"\x89PNG") + 1)
    raw[second + 16:second + 24] = struct.pack(">II", 20_000, 20_000)
    raw[second + 29:second + 33] = struct.pack(">I", zlib.crc32(bytes(raw[second + 12:second + 29])))
    bad["huge-icon"].write_bytes(bytes(raw))
    good.unlink()
    return bad


# -- reading odd images (in process: exact values) ------------------------------------------------

@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return make_odd_images(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("channels", [1, 3])
def test_odd_images_are_read_at_their_shape_without_warnings(odd, channels):
    for name, (path, hw) in odd.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            x = load_image(path, channels=channels)
        assert tuple(x.shape) == (channels, *hw), name
        assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0, name


def test_16_bit_and_float_and_int32_pixels_are_scaled_not_truncated(odd):
    grey16 = load_image(odd["grey16.png"][0], channels=1)[0]
    expected = torch.arange(30, dtype=torch.float32).reshape(5, 6) * 2000 / 65535
    assert torch.allclose(grey16, expected, atol=1e-6)
    # Floats already in [0, 1] are kept as they are (Pillow's convert("L") made them all 0).
    float01 = load_image(odd["float01.tif"][0], channels=1)[0]
    assert torch.allclose(float01, torch.linspace(0, 1, 30).reshape(5, 6), atol=1e-6)
    # Floats and 32-bit integers beyond that range are min-max scaled: linear, from 0 to 1.
    for name in ("float-wide.tif", "int32.tif"):
        x = load_image(odd[name][0], channels=1)[0].flatten()
        assert float(x[0]) == 0.0 and float(x[-1]) == pytest.approx(1.0), name
        steps = x[1:] - x[:-1]
        assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-4), name


def test_exif_orientation_turns_the_photo_upright(odd):
    x = load_image(odd["phone.jpg"][0], channels=1)[0]  # stored 12 x 30, shown 30 x 12
    assert x.shape == (30, 12)
    # Turning clockwise takes the stored top-left corner to the top-right.
    assert float(x[:3, -3:].mean()) > 0.8 and float(x[:3, :3].mean()) < 0.2


def test_palette_cmyk_and_animations_match_pillow(odd):
    with Image.open(odd["palette.png"][0]) as im:
        expected = np.asarray(im.convert("RGBA").convert("RGB"), dtype=np.float32) / 255
    assert np.allclose(load_image(odd["palette.png"][0], channels=3).permute(1, 2, 0).numpy(), expected)
    with Image.open(odd["cmyk.jpg"][0]) as im:
        expected = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    assert np.allclose(load_image(odd["cmyk.jpg"][0], channels=3).permute(1, 2, 0).numpy(), expected)
    for name in ("anim.gif", "anim.webp"):  # the first frame, not the last
        assert torch.allclose(load_image(odd[name][0], channels=1), torch.full((1, 7, 9), 40 / 255), atol=2 / 255)


def test_an_icon_gives_its_largest_picture(odd, tmp_path):
    x = load_image(odd["icon.ico"][0], channels=1)
    assert x.shape == (1, 512, 512) and torch.allclose(x, torch.full_like(x, 30 / 255))
    # Two pictures the directory both calls 256 x 256: the larger one still wins.
    both = ico_of_pngs(tmp_path / "both.ico", [(512, 512), (300, 300)])
    assert load_image(both, channels=1).shape == (1, 512, 512)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_images(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", ["truncated", "empty", "huge-header", "over-limit-header", "nan-float", "huge-icon",
                                  "text"])
def test_bad_images_raise_one_line_naming_the_file(bad, case):
    with pytest.raises(DataError) as info:
        load_image(bad[case], channels=1)
    message = str(info.value)
    assert bad[case].name in message and "\n" not in message


# -- shapes, sheets and writing (in process) ---------------------------------------------------------

class _Identity(torch.nn.Module):
    def __init__(self, in_shape, scale=1):
        super().__init__()
        self.in_shape, self.scale = in_shape, scale
        self.out_shape = (in_shape[0], in_shape[1] * scale, in_shape[2] * scale)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def reconstruct(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") if self.scale > 1 else x.clone()


@pytest.mark.parametrize("hw", [(1, 500), (500, 1), (1, 1), (3, 200), (200, 27)])
def test_thin_images_stitch_back_exactly(hw):
    img = torch.rand(1, *hw)
    assert torch.allclose(apply_tiled(_Identity((1, 28, 28)), img), img, atol=1e-6)
    up = apply_tiled(_Identity((1, 14, 14), scale=2), img, overlap=5)
    assert torch.allclose(up, F.interpolate(img[None], scale_factor=2, mode="nearest")[0], atol=1e-6)


def test_the_sheet_stays_small_for_any_shape():
    shapes = [(1, 10_000), (10_000, 1), (1, 100_000), (100_000, 1), (2, 200_000), (7_000, 7_000), (1, 1)]
    for hw in shapes:
        (h, w), = sheet_panel_sizes([hw])
        assert 1 <= h <= 800 and 1 <= 2 * w + 4 <= SHEET_MAX_WIDTH, (hw, h, w)
        assert h * w <= 8 * 8 * hw[0] * hw[1] or hw == (1, 1), hw  # enlarged at most 8 times a side
    sizes = sheet_panel_sizes(shapes * 9)
    width = max(2 * w + 4 for _, w in sizes)
    assert width * (sum(h for h, _ in sizes) + 4 * (len(sizes) - 1)) <= 1.05 * SHEET_MAX_PIXELS
    # A tiny image is still shown enlarged (pixel repetition), as before.
    assert sheet_panel_sizes([(28, 28)]) == [(112, 112)]
    sheet = before_after_sheet([(torch.rand(1, 1, 5000), torch.rand(1, 1, 10_000))])
    assert sheet.shape[0] == 3 and sheet.shape[2] <= SHEET_MAX_WIDTH and sheet.numel() <= 3 * SHEET_MAX_PIXELS


def test_atomic_writes_keep_what_exists_and_get_ordinary_permissions(tmp_path):
    path = tmp_path / "x.bin"
    atomic_write_bytes(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first" and [p.name for p in tmp_path.iterdir()] == ["x.bin"]
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# -- through the real CLI -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dn_run(make_run) -> Path:
    return make_run("dn", task="denoise", noise="gaussian:0.5")


@pytest.fixture(scope="module")
def sr_run(make_run) -> Path:
    return make_run("sr", task="super-resolution", scale=2)


@pytest.fixture(scope="module")
def plain_run(make_run) -> Path:
    return make_run("dense-ae")


def test_denoise_reads_every_odd_image_and_writes_it_at_full_size(dn_run, tmp_path):
    odd = make_odd_images(tmp_path / "in")
    odd.pop("icon.ico")  # 512 pixels a side: refused as an output, see test_upscale_refuses_a_result_...
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    assert_ok(aekit("denoise", dn_run, *(path for path, _ in odd.values()), "-o", out, "--device", "cpu"))
    for name, (_, (h, w)) in odd.items():
        with Image.open(out / name) as result:
            assert result.size == (w, h), name
    with Image.open(out / "sheet.png") as sheet:
        assert sheet.width <= SHEET_MAX_WIDTH and sheet.width * sheet.height <= 1.05 * SHEET_MAX_PIXELS
    assert unchanged_or_new(before, snapshot(tmp_path))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "row.png").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("case", ["truncated", "empty", "huge-header", pytest.param("nan-float", marks=pytest.mark.hostile),
                                  pytest.param("huge-icon", marks=pytest.mark.hostile)])
def test_denoise_refuses_a_bad_image_in_one_line_and_writes_nothing(dn_run, tmp_path, case):
    bad = make_bad_images(tmp_path / "in")
    good = tmp_path / "in" / "fine.png"
    Image.fromarray(grey8(30, 30)).save(good)
    before = snapshot(tmp_path)
    assert_refused(aekit("denoise", dn_run, good, bad[case], "-o", tmp_path / "out"), bad[case].name)
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "out").exists()  # the good file is not written either: inputs are all read first


def test_upscale_refuses_an_output_too_large_from_the_header(sr_run, tmp_path):
    # 7,000 x 7,000 is within the reading limit; doubled it is 196 M pixels: refused before decoding.
    side = int((MAX_PIXELS * 0.98) ** 0.5)
    big = png_with_declared_size(tmp_path / "big.png", side, side)
    before = snapshot(tmp_path)
    assert_refused(aekit("upscale", sr_run, big, "-o", tmp_path / "out"), "big.png", "x2 output")
    assert snapshot(tmp_path) == before


@pytest.mark.hostile
def test_upscale_refuses_a_result_its_format_cannot_hold(sr_run, tmp_path):
    Image.new("L", (200, 200), 9).save(tmp_path / "icon.ico", sizes=[(200, 200)])  # x2 = 400 > 256 a side
    before = snapshot(tmp_path)
    assert_refused(aekit("upscale", sr_run, tmp_path / "icon.ico", "-o", tmp_path / "out"), "icon.ico", "PNG")
    assert snapshot(tmp_path) == before


def test_outputs_never_overwrite_inputs_or_existing_files(dn_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    a, b = inputs / "a.png", inputs / "b.png"
    Image.fromarray(grey8(30, 30)).save(a)
    Image.fromarray(grey8(20, 40)).save(b)
    before = snapshot(tmp_path)
    # -o the inputs' own folder: refused, even with --overwrite.
    assert_refused(aekit("denoise", dn_run, a, b, "-o", inputs, "--overwrite"), "a.png", "overwrite the input")
    assert snapshot(tmp_path) == before
    # A second run into the same folder is refused before anything is written ...
    out = tmp_path / "out"
    assert_ok(aekit("denoise", dn_run, a, b, "-o", out))
    first = snapshot(tmp_path)
    (out / "a.png").unlink()  # only b.png and sheet.png are in the way now
    first.pop("out/a.png")
    assert_refused(aekit("denoise", dn_run, a, b, "-o", out), "b.png", "--overwrite")
    assert snapshot(tmp_path) == first and not (out / "a.png").exists()
    # ... and goes through with --overwrite.
    assert_ok(aekit("denoise", dn_run, a, b, "-o", out, "--overwrite"))
    assert (out / "a.png").is_file()
    # An output that is an input by another name (a link into the output folder): never written.
    other = tmp_path / "other"
    other.mkdir()
    os.link(a, other / "a.png")
    now = snapshot(tmp_path)
    assert_refused(aekit("denoise", dn_run, a, "-o", other, "--overwrite"), "overwrite the input")
    assert snapshot(tmp_path) == now
    (other / "a.png").unlink()
    (other / "a.png").symlink_to(a)
    now = snapshot(tmp_path)
    assert_refused(aekit("denoise", dn_run, a, "-o", other, "--overwrite"), "overwrite the input")
    assert snapshot(tmp_path) == now and (other / "a.png").is_symlink()
    # -o naming a file, not a folder.
    assert_refused(aekit("denoise", dn_run, b, "-o", a), "-o", "a.png", "folder")
    assert snapshot(tmp_path) == now


def test_sample_plot_and_embed_refuse_to_overwrite(plain_run, tmp_path):
    existing = {name: tmp_path / name for name in ("s.png", "p.png", "codes.npy")}
    for path in existing.values():
        path.write_bytes(b"precious")
    (tmp_path / "folder.png").mkdir()
    before = snapshot(tmp_path)
    assert_refused(aekit("sample", plain_run, "-n", 4, "-o", existing["s.png"]), "s.png", "--overwrite")
    assert_refused(aekit("plot", plain_run, "curves", "-o", existing["p.png"]), "p.png", "--overwrite")
    assert_refused(aekit("embed", plain_run, "-o", existing["codes.npy"]), "codes.npy", "--overwrite")
    assert_refused(aekit("plot", plain_run, "curves", "-o", tmp_path / "folder.png", "--overwrite"),
                   "folder.png", "folder")
    # An image of a folder dataset the command reads is an input: never written over.
    digits = tmp_path / "digits"
    digits.mkdir()
    Image.fromarray(grey8(28, 28)).save(digits / "0.png")
    before = snapshot(tmp_path)
    assert_refused(aekit("plot", plain_run, "ood", "--against", f"folder:{digits}", "-o", digits / "0.png",
                         "--overwrite"), "0.png", "overwrite the input")
    assert snapshot(tmp_path) == before


@pytest.mark.hostile
def test_sample_plot_and_embed_overwrite_when_told(plain_run, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    for command, extra, name in [("sample", ["-n", 4], "s.png"), ("plot", ["curves"], "p.png"),
                                 ("embed", [], "codes.npy")]:
        path = tmp_path / name
        path.write_bytes(b"old")
        path.chmod(0o600)
        assert_ok(aekit(command, plain_run, *extra, "-o", path, "--overwrite"))
        assert path.read_bytes() != b"old"
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, command
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codes.npy", "p.png", "s.png"]  # no temporary files


@pytest.mark.hostile
def test_extreme_strips_go_through_in_bounded_memory(dn_run, sr_run, tmp_path):
    """1 x 100,000 and 100,000 x 1 images (and 1 x 40,000): before, the sheet alone wanted gigabytes."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shapes = {"row100k.png": (1, 100_000), "column100k.png": (100_000, 1), "row40k.png": (1, 40_000)}
    for name, hw in shapes.items():
        Image.fromarray(grey8(*hw)).save(inputs / name)
    before = snapshot(tmp_path)
    for command, run, scale in [("denoise", dn_run, 1), ("upscale", sr_run, 2)]:
        out = tmp_path / command
        assert_ok(aekit(command, run, *(inputs / name for name in shapes), "-o", out))
        for name, (h, w) in shapes.items():
            with Image.open(out / name) as result:
                assert result.size == (w * scale, h * scale), (command, name)
        with Image.open(out / "sheet.png") as sheet:
            assert sheet.width <= SHEET_MAX_WIDTH and sheet.width * sheet.height <= 1.05 * SHEET_MAX_PIXELS
    assert unchanged_or_new(before, snapshot(tmp_path))
