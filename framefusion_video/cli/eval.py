"""``ffv eval``: PSNR/SSIM (and optionally identity distance) of the generator on synthetically
damaged faces, per kind of damage."""

from __future__ import annotations

import json
from pathlib import Path

import click

from framefusion_video.data.kinds import KINDS


@click.command("eval")
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Generator to measure (.tflite or .keras; default: the shipped generator, "
                   "ffv_generator.tflite in the package's weights/ folder).")
@click.option("--no-model", is_flag=True, help="Measure only the damaged input and the classical baseline.")
@click.option("--limit", type=click.IntRange(min=1), help="Use only the first N images (sorted by name).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS),
              help="Kinds of damage to measure (repeatable; default: all).")
@click.option("--identity", is_flag=True,
              help="Also the mean identity distance of the input and the model's output to the clean face "
                   "(dlib's face-recognition descriptors; lower is better, < 0.6 = the same person). "
                   "Needs the optional extra: pip install -e '.[identity]'.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the fixed damage.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the table as markdown.")
def eval(data_dir: Path, model_path: Path | None, no_model: bool, limit: int | None, kinds: tuple[str, ...],
         identity: bool, seed: int, json_path: Path | None,
         md_path: Path | None) -> None:  # noqa: A001 (the command's name)
    """Damage DATA_DIR's faces in fixed, seeded ways and measure input, classical baseline and model."""
    from framefusion_video.base.errors import FfvError
    from framefusion_video.evaluation.images import evaluate_folder
    from framefusion_video.base.filetypes import IMAGE_EXTENSIONS
    from framefusion_video.evaluation.identity import IdentityUnavailable
    from framefusion_video.base.outputs import check_new_file, write_file

    try:
        run = [p for p in (model_path, json_path, md_path) if p is not None]
        if json_path or md_path:  # the photos measured are files of the run too
            run += [p for p in data_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]
        for path, what in ((json_path, "JSON file"), (md_path, "markdown file")):
            if path is not None:
                check_new_file(path, what, [p for p in run if p is not path])
        report = evaluate_folder(data_dir, model_path, limit=limit, kinds=kinds or KINDS, seed=seed,
                                 with_model=not no_model, identity=identity)
        table = report.to_markdown()
        click.echo(table)
        if json_path:
            write_file(json_path, (json.dumps(report.to_dict(), indent=1) + "\n").encode("utf-8"), "JSON file")
        if md_path:
            write_file(md_path, (table + "\n").encode("utf-8"), "markdown file")
    except (FfvError, IdentityUnavailable) as exc:
        raise click.ClickException(str(exc)) from exc
