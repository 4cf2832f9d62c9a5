"""Shared test helpers: run the CLI in-process and capture its exit code and stderr."""

from __future__ import annotations

import contextlib
import io

from adaptlab.cli import main


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:  # --help
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()
