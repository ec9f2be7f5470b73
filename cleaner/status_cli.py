"""cp-status command line: options in, status out (a table, or JSON with -o json)."""

from __future__ import annotations

from typing import Any

import click

from common.cli import CONTEXT_SETTINGS, options_from, read_only_options, run_step
from common.errors import RetryableError
from common.runner import Run

# cp-status only reads.
STATUS_EXIT_CODES = """\b
Exit codes:
  0  the status was read (whatever the state of the migration)
  1  the cluster cannot be reached, or nothing could be read
  2  usage: a wrong option or environment variable
"""


@click.command(context_settings=CONTEXT_SETTINGS, epilog=STATUS_EXIT_CODES)
@click.option(
    "-o",
    "--output",
    envvar="CP_OUTPUT",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A readable table, or JSON for scripts.",
)
@read_only_options
def main(**params: Any) -> None:
    """Show where a cluster stands in the migration to the Connectivity Proxy module.

    The legacy installation and which of its objects remain, the ConnectivityProxy CRD and CR
    (status.state, migrated / backed-up / cleaned), the backup and whether its digests verify,
    the ServiceMappings handed over, and the module's operator Deployment. Read-only.
    """
    output = params.pop("output")
    options = options_from(params)

    def body(run: Run) -> None:
        from cleaner.status.gather import gather
        from cleaner.status.render import render_table, to_json
        from common.cli import connect

        status = gather(connect(options, run))
        if output == "json":
            click.echo(to_json(status))
        else:
            click.echo(render_table(status), nl=False)
        if not status.readable:
            raise RetryableError(
                "cp-status could read nothing: every read failed (see the rows above); "
                "check the kubeconfig's identity and its permissions"
            )

    from common import record

    run_step(
        record.attach(Run("status"), record_on_cr=False),
        options,
        body,
        remains="the status (cp-status only reads; nothing changed)",
    )


if __name__ == "__main__":
    main()
