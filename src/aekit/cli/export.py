"""``aekit export`` (a Hub model folder, or ONNX files) and ``aekit pretrained`` (the shipped models)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import main


@main.command(short_help="Write a run as a Hugging Face model folder, or as ONNX encoder and decoder.")
@click.argument("run_dir", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["hub", "onnx"]), default="hub", show_default=True,
              help="hub: config.json, model.safetensors and a model card, for a Hub model repository; "
                   "onnx: encoder.onnx, decoder.onnx and onnx.json.")
@click.option("--force", is_flag=True, help="Write into DIR even if it holds files (aekit's files are replaced).")
@click.option("--repo-id", default=None, metavar="ORG/NAME",
              help="hub: the repository you will upload to, so the card loads it as hf://ORG/NAME.")
@click.option("--license", "license_", default="mit", show_default=True,
              help="hub: the licence the card declares (a Hub licence id).")
def export(run_dir, folder, fmt, force, repo_id, license_):
    """Write RUN (a run folder, pretrained:NAME or hf://ORG/NAME) to the folder DIR for others to use.

    --format hub: a folder a Hugging Face model repository takes as it is (and a run folder aekit
    reads): config.json, model.safetensors, test metrics, curves, reconstructions.png and a
    README.md model card with the Hub's metadata.  Upload it with `hf upload ORG/NAME
    DIR`; anyone then loads it with aekit.load("hf://ORG/NAME").

    --format onnx: encoder.onnx (image -> mean and log-variance, or code) and decoder.onnx (code ->
    image in [0, 1]), any batch size, each checked with onnxruntime against PyTorch; onnx.json
    describes their inputs and outputs.

    DIR is written whole or not at all; a DIR that holds files is refused unless --force.
    """
    from ..app.export import export as export_run

    result = export_run(run_dir, folder, format=fmt, force=force, license=license_, repo_id=repo_id)
    for path in result.files:
        click.echo(f"wrote {path}")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if fmt == "hub":
        click.echo(f"upload with: hf upload {repo_id or 'ORG/NAME'} {folder}")


@main.command(short_help="List the models shipped with aekit (use one as pretrained:NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def pretrained(as_json):
    """List the models shipped with aekit and their test metrics.

    Any command that takes a run takes one of these as pretrained:NAME, e.g. `aekit serve
    pretrained:mnist-vae-2d`, and so does aekit.load("pretrained:NAME").
    """
    from ..app.zoo import list_pretrained, summary

    rows = list_pretrained()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("this install ships no pretrained models (scripts/train_zoo.py trains them into src/aekit/zoo/)")
        return
    table = [(r["load"], r["model"], r["dataset"], r["task"], summary(r["test_metrics"]),
              "" if r["weights_bytes"] is None else f"{r['weights_bytes'] / 1e6:.2f} MB {r['precision']}")
             for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row, r in zip(table, rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if r["description"]:
            click.echo(f"{'':<{widths[0]}}  {r['description']}")
