"""``--config FILE``: a command's options from a TOML file, flags overriding it, and the resolved options
written back in the same format (``<out>/<command>_config.toml``), so ``--config`` on that file repeats the run.

Keys are the long option names without dashes (``targets-per-level = 10``, ``out = "runs/b"``); a
``--x/--no-x`` switch is ``x = true``; a repeatable option is an array. The file fills in click's defaults
(``ctx.default_map``), so any flag given on the command line wins over it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import tomli_w
import typer

from medunlearn.errors import MedunlearnError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the Python 3.10 path
    import tomli as tomllib


def key_of(param: Any) -> str:
    """The file's key for a parameter: its first long option name without dashes."""
    longs = [opt for opt in param.opts if opt.startswith("--")]
    return (longs[0] if longs else param.opts[0]).lstrip("-")


def _options(command: Any) -> dict[str, Any]:
    """The command's options (typer's own click parameters), by key; ``--config`` itself left out."""
    return {key_of(p): p for p in command.params if p.param_type_name == "option" and key_of(p) != "config"}


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager callback of ``--config``: the file's values become the command's defaults."""
    if value is None or ctx.resilient_parsing:
        return value
    path = Path(value)
    if not path.is_file():
        raise MedunlearnError(f"--config {path}: no such file; give a TOML file such as a run's bench_config.toml.")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MedunlearnError(f"--config {path} is not valid TOML ({exc}); fix that line of the file.") from None
    options = _options(ctx.command)
    for key, given in table.items():
        if key not in options:
            raise MedunlearnError(
                f"--config {path}: `{ctx.info_name}` has no option {key!r}; its keys are {', '.join(sorted(options))}."
            )
        if isinstance(given, dict):
            raise MedunlearnError(f"--config {path}: {key!r} is a table; give it a value, like {key} = 5.")
    ctx.default_map = {**(ctx.default_map or {}), **{options[key].name: given for key, given in table.items()}}
    return path


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file of this command's options (keys: the option names without dashes); flags override it. "
        "Every run writes its resolved options as <out>/<command>_config.toml.",
        callback=load_config,
        is_eager=True,
    ),
]


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def resolved_options(ctx: typer.Context) -> dict[str, Any]:
    """The command's options as this run resolved them (file, flags and defaults), under the file's keys."""
    options = _options(ctx.command)
    out = {}
    for key, param in options.items():
        value = ctx.params.get(param.name)  # type: ignore[arg-type]
        if value is None or (isinstance(value, (list, tuple)) and not value):
            continue
        out[key] = _plain(value)
    return out


def write_resolved(ctx: typer.Context, folder: Path, command: str) -> Path:
    """Write ``folder/<command>_config.toml``: ``--config`` on it repeats this run."""
    path = Path(folder) / f"{command}_config.toml"
    path.write_text(
        f"# medunlearn {command}: the resolved options of this run; `medunlearn {command} --config {path.name}` "
        "repeats it (flags override)\n" + tomli_w.dumps(resolved_options(ctx)),
        encoding="utf-8",
    )
    return path
