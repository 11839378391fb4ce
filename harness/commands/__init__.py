"""`harness` command line: thin shells over the library, one module per subcommand.

Each command parses its flags, calls one library function, and prints: data
on stdout (a table for people, JSON with --json), progress and errors on
stderr. A HarnessError becomes its message and exit code 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness import config as config_lib
from harness.errors import HarnessError

DISTRIBUTION = "tflite-farm"


class _HarnessGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HarnessError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)


@click.group(cls=_HarnessGroup)
# The installed distribution's metadata, so the version names what pip/pipx installed.
@click.version_option(package_name=DISTRIBUTION, prog_name="harness")
@click.option(
    "--config",
    "config_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help=f"Configuration folder looked in first (then ${config_lib.ENV_CONFIG}, ./device_profiles, the user's config "
    "folder, the packaged defaults); 'harness config' shows what is in effect.",
)
@click.pass_context
def main(ctx: click.Context, config_dir: Path | None) -> None:
    """Benchmark TensorFlow Lite model variants across a device farm."""
    ctx.with_resource(config_lib.config_dir_option(config_dir))


def _register_subcommands() -> None:
    from harness.commands.binaries import binaries
    from harness.commands.compare import compare_command
    from harness.commands.config import config_command, init_command
    from harness.commands.convert import convert_command, examples_command
    from harness.commands.dashboard import dashboard_command
    from harness.commands.demo import demo_command
    from harness.commands.devices import devices
    from harness.commands.farm import farm
    from harness.commands.lease import lease_group
    from harness.commands.parse_log import parse_log_command
    from harness.commands.policy import policy
    from harness.commands.results import results_group
    from harness.commands.run import run_command

    for command in (
        farm,
        devices,
        convert_command,
        examples_command,
        run_command,
        results_group,
        compare_command,
        demo_command,
        dashboard_command,
        policy,
        binaries,
        lease_group,
        parse_log_command,
        config_command,
        init_command,
    ):
        main.add_command(command)


_register_subcommands()
