"""Testing tools that ship with pixgate: golden provider cases replayed over real sockets.

``engine.testing.golden`` is the runner (``load_cases``, ``run_case``, ``run_cases``); it has no
pytest dependency so a ``pixgate test DIR [PROVIDER...]`` command can use it too.
"""

from .cases import CaseFileError, GoldenCase, discover_cases, load_case, load_cases
from .golden import CaseResult, default_cases_dir, format_result, main, run_case, run_cases
from .sandbox import env_prefix

__all__ = [
    "CaseFileError",
    "CaseResult",
    "GoldenCase",
    "default_cases_dir",
    "discover_cases",
    "env_prefix",
    "format_result",
    "load_case",
    "load_cases",
    "main",
    "run_case",
    "run_cases",
]
