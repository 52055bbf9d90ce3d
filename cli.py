"""``forensics``: the command-line entry point.

A thin click root. Subcommands live in the packages that own them and are imported only when invoked, so
``forensics --help`` starts in well under a second and never imports torch (click's "lazy group" pattern).
Exit codes: 0 = ok / nothing flagged, 1 = something flagged (``scan``), 2 = usage or fatal error.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

import click

from forensics_core._version import __version__
from forensics_core.clirun import CONTEXT_SETTINGS, configure_logging, run_click

# name -> (module:attribute, one-line help shown by ``forensics --help`` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("forensics.commands.scan:scan", "Scan images and videos for synthetic or manipulated faces."),
    "serve": ("forensics.commands.serve:serve", "Serve scans over HTTP for moderation pipelines (JSON records)."),
    "faces": ("forensics.commands.faces:faces", "Detect, align and extract faces from images and videos."),
    "data": ("forensics.commands.data:data", "Import, normalise and inspect datasets (manifest.jsonl)."),
    "doctor": ("forensics.commands.doctor:doctor", "Report the environment: Python, torch, devices, codecs, models."),
    "gan": ("generators.cli:gan", "Train, sample and evaluate the GAN and diffusion generator suite."),
    "reenact": ("generators.video.cli:reenact", "Train a motion-model reenactor and drive a face with a clip."),
    "swap": ("generators.video.cli:swap", "Train a face-swap autoencoder and apply it to a clip."),
    "video": ("generators.video.cli:video", "Make labelled fake-video datasets (reenact, swap, warp, ...)."),
    "detector": ("detectors.cli:detector", "List, train, calibrate, evaluate and explain detectors."),
    "bench": ("benchmarks.cli:bench", "Run benchmark protocols and write reports."),
}


@dataclass
class Context:
    """Shared options handed to every subcommand through ``click.pass_obj``."""

    verbose: int = 0
    quiet: bool = False

    def echo(self, msg: str) -> None:
        if not self.quiet:
            click.echo(msg, err=True)


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(mod_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog="Example: forensics scan photos/ --jsonl out.jsonl --report report.html",
)
@click.version_option(__version__, prog_name="forensics")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and results; no progress bars.")
@click.pass_context
def root(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Find synthetic and manipulated faces in images and videos."""
    configure_logging(verbose, quiet)
    ctx.obj = Context(verbose=verbose, quiet=quiet)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: toolkit errors become one line on stderr and exit code 2."""
    return run_click(root, argv, "forensics")


if __name__ == "__main__":
    sys.exit(main())
