"""CLI: `clinseek models check|export` and `clinseek cxr classify` (`clinseek data train-phantom` is the demo plugin's).

Added to the `clinseek` group by the plugin's register_commands hook; heavy imports stay inside the commands.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from clinseek.commands.models_group import models
from clinseek.errors import UserError


@click.command("check")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--providers", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def models_check(card: Path, providers: str) -> None:
    """Validate a model CARD and its weights: schema, sha256, input/output shapes and a dry run."""
    from .card import load_card, resolve_card_path
    from .runtime import CxrModel, dry_run

    c = load_card(resolve_card_path(str(card)))
    model = CxrModel(c, providers=providers)  # checks the hash and the shapes
    probs = dry_run(model)
    click.echo(f"card       {c.path}")
    click.echo(f"model      {c.name} v{c.version}: {len(c.labels)} labels ({', '.join(c.labels)})")
    click.echo(f"weights    {c.weights_path.name}  sha256 {model.sha256}  ok")
    click.echo(f"input      {model.input_name} [N, {c.input.channels}, {c.input.size}, {c.input.size}]  "
               f"scaling {c.preprocess.scaling}; output {model.output_name} [N, {len(c.labels)}] "
               f"activation {c.output.activation}")
    click.echo(f"providers  {', '.join(model.providers)}")
    click.echo(f"dry run    ok: batch of {probs.shape[0]}, probabilities in [{probs.min():.3f}, {probs.max():.3f}]")
    if c.evaluation and c.evaluation.auroc:
        aucs = ", ".join(f"{k} {v:.3f}" for k, v in c.evaluation.auroc.items() if v is not None)
        click.echo(f"evaluation {c.evaluation.dataset}: AUROC {aucs}")


@click.command("export")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="folder for .onnx + card")
@click.option("--torchxrayvision", "xrv_name", default=None, metavar="NAME",
              help="export a torchxrayvision model, e.g. densenet121-res224-all (needs --weights)")
@click.option("--module", "module_ref", default=None, metavar="PKG.MOD:FACTORY",
              help="a function returning the torch module to export (a user's own model)")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="weights file: a state_dict or a whole pickled module (torchxrayvision's .pt files)")
@click.option("--name", default=None, help="model name (default from the model)")
@click.option("--labels", default=None, help="comma-separated labels in output order (--module)")
@click.option("--input-size", type=int, default=224, show_default=True)
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True)
@click.option("--scaling", type=click.Choice(["unit", "mean_std", "xrv"]), default="unit", show_default=True)
@click.option("--activation", type=click.Choice(["sigmoid", "none"]), default="sigmoid", show_default=True)
@click.option("--training-data", default="unknown", help="what the weights were trained on (for the card)")
def models_export(out_dir: Path, xrv_name: str | None, module_ref: str | None, weights: Path | None,
                  name: str | None, labels: str | None, input_size: int, channels: str, scaling: str,
                  activation: str, training_data: str) -> None:
    """Export a torch model to ONNX with a model card; checks that ONNX Runtime reproduces torch's outputs."""
    _need_torch("export")
    from . import export as ex

    if bool(xrv_name) == bool(module_ref):
        raise UserError("give exactly one of --torchxrayvision NAME or --module PKG.MOD:FACTORY")
    if xrv_name:
        card = ex.export_torchxrayvision(xrv_name, weights, out_dir, name=name)
    else:
        if not labels:
            raise UserError("--module needs --labels (comma-separated, in output order)")
        net = ex.load_module(module_ref, weights)
        card = ex.export_model(
            net, out_dir, name=name or module_ref.rsplit(":", 1)[-1],
            labels=[x.strip() for x in labels.split(",") if x.strip()], input_size=input_size,
            channels=int(channels), preprocess={"resize": input_size, "crop": "center", "scaling": scaling,
                                                **({"mean": [0.5], "std": [0.25]} if scaling == "mean_std" else {})},
            activation=activation, training_data=training_data,
            source=f"{module_ref}" + (f" with {weights.name}" if weights else ""))
    click.echo(str(card))


def _need_torch(what: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError(f"`clinseek models {what}` needs torch", hint="pip install 'clinseek[train]'") from None


@click.group("cxr", help="Run chest X-ray models on image files (for people; agents use the cxr toolset).")
def cxr() -> None:
    pass


@cxr.command("classify")
@click.option("--model", "model", required=True, help="a model card (.yaml) or a built-in name (phantom)")
@click.option("--providers", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="one JSON object per image")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
def cxr_classify(model: str, providers: str, as_json: bool, images: tuple[Path, ...]) -> None:
    """Classify IMAGE files (PNG, JPEG, DICOM) with a model card; prints what the cxr_classify tool shows."""
    import numpy as np

    from .card import load_card, resolve_card_path
    from .formatting import format_file_result, label_rows
    from .images import ImageError, load_image
    from .runtime import CxrModel

    card = load_card(resolve_card_path(model, Path.cwd()))
    m = CxrModel(card, providers=providers)
    window = (card.preprocess.window.center, card.preprocess.window.width) if card.preprocess.window else None
    loaded, failed = [], 0
    for path in images:
        try:
            loaded.append((path, load_image(path, window=window)))
        except ImageError as exc:
            failed += 1
            click.echo(f"error: {exc.message}", err=True)  # the message names the file
    if loaded:
        probs = m.predict(np.stack([m.prepare(img.pixels) for _, img in loaded]))
        for (path, img), p in zip(loaded, probs):
            if as_json:
                click.echo(json.dumps({"image": str(path), "sha256": img.sha256, "model": card.name,
                                       "model_sha256": m.sha256, "notes": list(img.notes),
                                       "labels": [{"label": lab, "probability": round(pr, 4), "threshold": t,
                                                   "positive": pos} for lab, pr, t, pos in label_rows(card, p)]}))
            else:
                click.echo(format_file_result(card, str(path), p, img.notes))
                click.echo("")
    if failed:
        sys.exit(2)


models.add_command(models_check)
models.add_command(models_export)
