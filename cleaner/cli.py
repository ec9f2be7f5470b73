"""cp-cleaner command line: options in, core out, exit code from common.cli.run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from common.cli import CONTEXT_SETTINGS, EXIT_CODES, options_from, run, shared_options

if TYPE_CHECKING:
    from common import record
    from common.cluster.client import Kube


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES)
@shared_options
def main(**params: Any) -> None:
    """Hand ServiceMappings to the module and remove the legacy Connectivity Proxy.

    Labels and annotates the ServiceMapping CRD and every ServiceMapping for the new operator,
    deletes the legacy 2.9.3 objects (never those the module owns; the user configuration
    only while it still matches its backup), then marks the CR kyma-system/connectivity-proxy
    connectivityproxy.sap.com/cleaned=true. Refused before cp-backup has run.
    """
    options = options_from(params)

    def body(kube: Kube) -> record.Outcome:
        from cleaner.core import Settings, clean
        from common import record

        outcome = clean(kube, Settings(dry_run=options.dry_run))
        if outcome.report:
            click.echo(outcome.report, nl=False)
        click.echo(outcome.summary)
        if outcome.refusal is not None:
            raise outcome.refusal
        return record.done(outcome.summary)

    from cleaner.progress import start

    run("cleaner", options, body, progress=start, step="cleaner")
