"""examples/lesson.ipynb runs end to end on small settings, so the lesson never rots."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "lesson.ipynb"


@pytest.mark.slow
def test_lesson_notebook_runs_end_to_end(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    (params,) = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    params.source = f'DATASET = "mnist-5k"\nOTHER = "fashion-mnist"\nDATA_DIR = None\nEPOCHS = 1\nOUT = r"{tmp_path}"\nREPORTS = False\n'
    NotebookClient(nb, timeout=900, startup_timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 15, f"only {len(images)} figures were shown"
    # every section trained its run
    for name in ("conv-ae", "conv-ae-2d", "denoise", "upscale-sr", "vae-2d", "conv-vae", "cvae", "aae", "dense-ae-30"):
        assert (tmp_path / name / "model.safetensors").is_file(), name
