"""The `lifelong` command line: the app, its global options, and the entry point.

Each command group lives in its own module under `lifelong/commands/` and is registered here;
every error is one line on stderr and exit code 2; nothing here touches the store directly.
"""

from __future__ import annotations

import os
import sys
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Any

import typer

import lifelong
from lifelong.commands import benchmarks, datasets, learning, metrics_report
from lifelong.commands import library as library_commands  # `library` is also the --library option
from lifelong.commands.options import Settings
from lifelong.errors import Interrupted

app = typer.Typer(
    name="lifelong",
    help="A lifelong-learning agent with a persistent module library.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# The top level lists its commands in this order, then the groups snapshot, bench and data.
for group in (library_commands.app, learning.app, datasets.app, metrics_report.app):
    app.add_typer(group)
app.add_typer(library_commands.snapshot_app, name="snapshot")
app.add_typer(benchmarks.bench_app, name="bench")
app.add_typer(datasets.data_app, name="data")

EXIT_ERROR = 2
EXIT_INTERRUPTED = lifelong.EXIT_INTERRUPTED  # 128 + SIGINT, as the shell says of a process Ctrl-C ended


@app.callback()
def options(
    ctx: typer.Context,
    library: Annotated[
        Path,
        typer.Option("--library", "-L", envvar="LIFELONG_LIBRARY", help="Library folder.", show_default=True),
    ] = Path("library"),
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    lock_timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait for another writer (env LIFELONG_LOCK_TIMEOUT, default 30)."),
    ] = None,
) -> None:
    ctx.obj = Settings(library, as_json, lock_timeout)


# ---------------------------------------------------------------------------- entry point
def _fail(message: str, code: int = EXIT_ERROR) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    """Entry point: run the app, then end the process at once with its exit code.

    Interpreter finalization is skipped on purpose: icechunk's tokio threads may still be finishing
    store I/O futures, and Python tearing down under them aborts the process (SIGABRT or SIGBUS,
    in about one run of ten), which turned finished commands into exit code 134.
    """
    try:
        _main()
        code: Any = 0
    except SystemExit as done:
        code = done.code
    if not isinstance(code, int):  # sys.exit(None) is success, sys.exit("text") prints and fails
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    if "lifelong.runner" in sys.modules:  # worker processes end with their pool, not as leftovers
        sys.modules["lifelong.runner"].close_workers()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (lifelong tasks | head): nothing to add
            stream.flush()
    os._exit(code)


def _main() -> None:
    """Run the app; turn every expected failure into one line and exit code 2."""
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    # Ctrl-C can land while zarr waits on one of its coroutines; Python then warns, at some later
    # garbage collection, that the coroutine was never awaited. That is noise, not news.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)
    try:
        code = app(standalone_mode=False)  # returns the code of a typer.Exit raised by a command
        sys.exit(code if isinstance(code, int) else 0)
    except Interrupted as error:
        _fail(str(error), EXIT_INTERRUPTED)
    except (lifelong.LibraryError, lifelong.LifelongError) as error:
        _fail(str(error))
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # usage errors: unknown command, bad option value, ...
        _fail(error.format_message())
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted; nothing was committed", EXIT_INTERRUPTED)
    except OSError as error:
        _fail(f"{error.strerror or error}: {error.filename}" if error.filename else str(error))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
