"""The ``ray-orch`` command's shared parts: the app, argument types, and errors as one
message and an exit code (the commands are in ``workflows.py`` and ``runs.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from ray_orch.core.errors import RayOrchError, RunCancelledError, WorkflowDefinitionError

__all__ = ["FileArg", "FormatChoice", "ModeChoice", "ModeOpt", "app", "die", "errors", "fail",
           "kind", "one_line"]

app = typer.Typer(
    name="ray-orch", add_completion=False, no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Orchestrate LLM agents on Ray: run, validate and draw workflows (.yaml or .py).")

YAML = (".yaml", ".yml")
OUTPUT_WIDTH = 100


class ModeChoice(str, Enum):
    sequential = "sequential"
    workflow = "workflow"
    hierarchical = "hierarchical"


class FormatChoice(str, Enum):
    mermaid = "mermaid"
    png = "png"


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A .yaml workflow or a .py driver script.")]
ModeOpt = Annotated[ModeChoice | None, typer.Option(
    "--mode", "-m", help="Use this mode instead of the YAML file's `process:`.")]


class _Exit(Exception):
    """Ends a command with a message on stderr and an exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int) -> NoReturn:
    raise _Exit(message, code)


@contextlib.contextmanager
def errors() -> Iterator[None]:
    """Typed errors -> one line on stderr and the documented exit code."""
    try:
        yield
    except _Exit as exc:
        die(str(exc), exc.code)
    except KeyboardInterrupt:
        die("interrupted; the run was cancelled (completed results are kept in "
             "checkpoints when checkpoint_dir is set)", 130)
    except RunCancelledError as exc:
        die(str(exc), 130)
    except WorkflowDefinitionError as exc:
        die(str(exc), 2)
    except (RayOrchError, ImportError) as exc:
        die(str(exc), 1)


def die(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def kind(file: Path) -> str:
    suffix = file.suffix.lower()
    if suffix in YAML:
        return "yaml"
    if suffix == ".py":
        return "py"
    fail(f"{file}: expected a .yaml/.yml workflow or a .py driver script", 2)



def one_line(text: str | None, width: int = OUTPUT_WIDTH) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


