"""cp-status command line: options in, status out (a table, or JSON with -o json)."""

from __future__ import annotations

from typing import Any

import click

from common.cli import CONTEXT_SETTINGS, Options, run


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--kubeconfig",
    envvar="CP_KUBECONFIG",
    type=click.Path(dir_okay=False),
    help="Kubeconfig file. Default: $KUBECONFIG, then in-cluster, then ~/.kube/config.",
)
@click.option("--context", envvar="CP_CONTEXT", help="Kubeconfig context to use.")
@click.option(
    "-o",
    "--output",
    envvar="CP_OUTPUT",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A readable table, or JSON for scripts.",
)
@click.option(
    "--log-format",
    envvar="CP_LOG_FORMAT",
    type=click.Choice(["auto", "json", "text"]),
    default="auto",
    show_default=True,
    help="auto: JSON lines when stderr is not a terminal, text when it is.",
)
@click.option("-v", "--verbose", envvar="CP_VERBOSE", count=True, help="More detail (debug logs).")
def main(**params: Any) -> None:
    """Show where a cluster stands in the migration to the Connectivity Proxy module.

    The legacy installation and which of its objects remain, the ConnectivityProxy CRD and CR
    (status.state, migrated / backed-up / cleaned), the backup and whether its digests verify,
    the ServiceMappings handed over, and the module's operator Deployment. Read-only.

    Exit codes: 0 (whatever the state), 1 the cluster cannot be reached, 2 usage.
    """
    output = params.pop("output")
    options = Options(
        kubeconfig=params["kubeconfig"],
        context=params["context"],
        dry_run=False,
        log_format=params["log_format"],
        verbose=params["verbose"],
    )

    def body() -> None:
        import json

        from cleaner.status import gather, render_table
        from common.cli import connect

        status = gather(connect(options, "status"))
        if output == "json":
            click.echo(json.dumps(status, indent=2))
        else:
            click.echo(render_table(status), nl=False)

    run("status", options, body)


if __name__ == "__main__":
    main()
