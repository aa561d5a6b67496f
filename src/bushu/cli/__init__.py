"""`bushu` command line: one module per subcommand; each parses arguments and calls the library.

Subcommand modules import heavy libraries inside their functions, so `bushu --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import BushuError, as_flags

# command name -> module under bushu.cli (the module defines a click command called `command`)
COMMANDS = {
    "quickstart": "quickstart",
    "import": "import_",
    "info": "info",
    "env": "env",
    "bench": "bench",
    "eval": "eval_",
    "predict": "predict",
    "serve": "serve",
    "optimize": "optimize",
    "export": "export",
    "plan": "plan",
    "train": "train",
    "package": "package",
    "ui": "ui",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            return importlib.import_module(f"bushu.cli.{COMMANDS[name]}").command
        except ModuleNotFoundError as e:
            if e.name != f"bushu.cli.{COMMANDS[name]}":
                raise
            return None  # a command whose module is not in this build

    def resolve_command(self, ctx: click.Context, args: list[str]):  # "did you mean" for typos
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            from ..errors import did_you_mean

            close = did_you_mean(args[0], COMMANDS) if args else []
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise click.UsageError(f"No such command {args[0]!r}.{hint} Commands: {', '.join(COMMANDS)}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="bushu")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """bushu (部署): from a trained model or labelled data to a fast, validated deployment."""
    from .. import progress
    from ._progress import RichProgress

    progress.set_default(RichProgress())  # the library's progress=True: a bar on stderr (cli/ owns the console)
    ctx.obj = {"debug": debug}


def main(argv: list[str] | None = None) -> int:
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="bushu", standalone_mode=False)
    except BushuError as e:
        if debug:
            raise
        click.secho(f"error: {as_flags(e.message)}", fg="red", err=True)
        if e.hint:
            click.echo(f"Hint: {as_flags(e.hint)}", err=True)
        return 2
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except click.Abort:
        click.echo("aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return rc if isinstance(rc, int) else 0
