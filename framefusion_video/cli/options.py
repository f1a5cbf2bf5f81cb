"""The options of ``ffv restore`` and ``ffv preview``, derived from :class:`RestoreConfig`'s fields.

Each field's default, range and help are written once, on the field (``config.Spec``); the click
options built here have ``default=None``, so that "given on the command line" means "not None"
and a speed preset (``--fast``, ``--quality``) fills only the options left out.
"""

from __future__ import annotations

from dataclasses import Field, fields
from typing import Any, Callable

import click

from framefusion_video.restore.config import PRESETS, RestoreConfig, Spec, preset_config, spec_of


def flag_name(f: Field) -> str:
    """The flag of a field: its :class:`Spec`'s ``flag``, else ``--`` and its name with dashes."""
    return spec_of(f).flag or "--" + f.name.replace("_", "-")


def click_type(f: Field) -> click.ParamType:
    """The click type of a field, from its annotation and :class:`Spec`: a choice, a bounded
    number or a path to a file."""
    spec = spec_of(f)
    if spec.choices is not None:
        return click.Choice([str(c) for c in spec.choices])
    kind = {"int": click.IntRange, "float": click.FloatRange}.get(str(f.type))
    if kind is None:
        return click.Path(dir_okay=False, path_type=str)
    return kind(spec.low, spec.high, max_open=spec.high_open)


def _shown_default(f: Field) -> str:
    """``Default: X.``, as the help text ends, or "" where the field's default is None."""
    if f.default is None:
        return ""
    if isinstance(f.default, bool):
        return f"Default: {flag_name(f) if f.default else '--no-' + flag_name(f)[2:]}."
    return f"Default: {f.default}."


def _to_field_type(f: Field) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback that turns a choice's string back into the field's value (``--upscale 2``
    -> 2); None (not given) stays None."""
    spec = spec_of(f)

    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None or spec.choices is None:
            return value
        return next(c for c in spec.choices if str(c) == value)

    return convert


def config_option(f: Field) -> Callable[[Callable], Callable]:
    """The click option of one :class:`RestoreConfig` field (``default=None``: not given)."""
    spec: Spec = spec_of(f)
    text = " ".join(part for part in (spec.help, _shown_default(f)) if part)
    name = flag_name(f)
    if str(f.type) == "bool":
        return click.option(f"{name}/--no-{name[2:]}", f.name, default=None, help=text)
    return click.option(name, f.name, type=click_type(f), default=None, callback=_to_field_type(f), help=text)


def _preset_help(name: str) -> str:
    """``--fast``'s help: the flags its preset sets, as ``PRESETS`` holds them."""
    by_name = {f.name: f for f in fields(RestoreConfig)}
    flags = ", ".join(f"{flag_name(by_name[k])} {v}" for k, v in PRESETS[name].items())
    return f"{'Faster' if name == 'fast' else 'Slower'}: {flags} (unless given)."


#: Options for every :class:`RestoreConfig` field that has a flag, then ``--fast`` / ``--quality``.
CONFIG_OPTIONS = (
    *(config_option(f) for f in fields(RestoreConfig) if spec_of(f).help is not None),
    click.option("--fast", "speed", flag_value="fast", help=_preset_help("fast")),
    click.option("--quality", "speed", flag_value="quality", help=_preset_help("quality")),
)


def config_options(command: Callable) -> Callable:
    """Add a flag for each :class:`RestoreConfig` field and the speed presets to ``command``; the
    command receives them as keyword arguments, to hand to :func:`config_from_options`."""
    for option in reversed(CONFIG_OPTIONS):
        command = option(command)
    return command


def config_from_options(ctx: click.Context, options: dict[str, Any]) -> RestoreConfig:
    """The :class:`RestoreConfig` of a command's keyword arguments: the fields given (not None),
    over the preset named by ``speed`` (None: the defaults). An impossible combination is a
    usage error."""
    names = {f.name for f in fields(RestoreConfig)}
    given = {k: v for k, v in options.items() if k in names and v is not None}
    try:
        return preset_config(options.get("speed") or "default", **given)
    except ValueError as exc:
        raise click.UsageError(str(exc), ctx) from exc
