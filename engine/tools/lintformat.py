"""Output formats for `pixgate lint`: text (default), json, and GitHub Actions workflow commands.

The `github` format prints one workflow command per diagnostic,

    ::error file=config/providers.d/x.yaml,line=14,col=11,title=E202::tasks.generate...: message

so a pull request shows every problem inline on the changed file. Escaping follows GitHub's
toolkit (`@actions/core`): in the message `%`, CR and LF; in properties also `:` and `,`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..config.diagnostics import Diagnostic, Severity
from ..config.loader import BuildResult

FORMATS = ("text", "json", "github")


def escape_data(text: str) -> str:
    """A workflow command's message (after `::`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (`file=...`, `title=...`)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation_path(directory: str | os.PathLike[str], rel: str, cwd: str | None = None) -> str:
    """The diagnostic's file relative to the working directory (GitHub resolves annotation
    paths against the repository root, where a workflow runs): `config/providers.d/x.yaml`
    for `pixgate lint config`. A file outside the working directory keeps its absolute path."""
    here = os.path.abspath(cwd if cwd is not None else os.getcwd())
    full = os.path.normpath(os.path.join(here, os.fspath(directory), rel))
    relative = os.path.relpath(full, here)
    if relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return Path(full).as_posix()
    return Path(relative).as_posix()


def github_command(diag: Diagnostic, file: str) -> str:
    """One `::error` / `::warning` workflow command for a diagnostic."""
    command = "warning" if diag.severity is Severity.WARNING else "error"
    props = ",".join(
        (
            f"file={escape_property(file)}",
            f"line={diag.line}",
            f"col={diag.col}",
            f"title={escape_property(diag.code)}",
        )
    )
    message = f"{diag.path or '.'}: {diag.message}"
    return f"::{command} {props}::{escape_data(message)}"


def github_lines(
    diagnostics: Iterable[Diagnostic], directory: str | os.PathLike[str], cwd: str | None = None
) -> list[str]:
    return [github_command(d, annotation_path(directory, d.file, cwd)) for d in diagnostics]


def json_report(result: BuildResult) -> str:
    diags = result.diagnostics.sorted()
    return json.dumps({"ok": result.ok, "diagnostics": [d.as_dict() for d in diags]}, indent=2)


def summary(result: BuildResult) -> str:
    """The closing line (stderr): counts and, when it builds, the config version."""
    errors, warnings = len(result.diagnostics.errors), len(result.diagnostics.warnings)
    if result.snapshot is not None:
        return (
            f"ok: {len(result.snapshot.providers)} providers, "
            f"{len(result.snapshot.routes.routes)} routes, {warnings} warnings "
            f"(config version {result.snapshot.version})"
        )
    return f"failed: {errors} errors, {warnings} warnings"
