"""cp-cleaner command line: options in, core out, exit code from common.runner."""

from __future__ import annotations

from typing import Any

import click

from common.cli import CONTEXT_SETTINGS, EXIT_CODES, options_from, run_step, shared_options
from common.runner import Run


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

    def body(run: Run) -> None:
        from cleaner import progress
        from cleaner.core import Settings, clean
        from common.cli import connect

        ledger = progress.start(run)
        outcome = clean(connect(options, run), Settings(dry_run=options.dry_run), ledger)
        if outcome.report:
            click.echo(outcome.report, nl=False)
        click.echo(outcome.summary)
        run.summary = outcome.summary
        if outcome.refusal is not None:
            raise outcome.refusal

    from common import record

    run_step(record.attach(Run("cleaner"), dry_run=options.dry_run), options, body)
