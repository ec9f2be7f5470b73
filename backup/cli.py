"""cp-backup and cp-restore command lines: options in, core out, exit code from common.runner."""

from __future__ import annotations

from typing import Any

import click

from common.cli import CONTEXT_SETTINGS, EXIT_CODES, options_from, run_step, shared_options
from common.runner import Run


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES)
@shared_options
def backup_main(**params: Any) -> None:
    """Keep a verified copy of the legacy Connectivity Proxy configuration.

    Copies kyma-system/connectivity-proxy and kyma-system/connectivity-proxy-info into the
    namespace connectivity-proxy-backup, reads them back, compares digests, and then marks the
    CR kyma-system/connectivity-proxy connectivityproxy.sap.com/backed-up=true.
    """
    options = options_from(params)

    def body(run: Run) -> None:
        from backup.core import Settings, backup
        from common.cli import connect

        outcome = backup(connect(options, run), Settings(dry_run=options.dry_run))
        if outcome.diff and options.dry_run:
            click.echo(outcome.diff, nl=False)
        click.echo(outcome.summary)
        run.summary, run.attention = outcome.summary, outcome.attention

    from common import record

    run_step(record.attach(Run("backup"), dry_run=options.dry_run), options, body)


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES)
@shared_options
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite ConfigMaps in kyma-system that differ from their backups.",
)
@click.option(
    "--from-preserved",
    "from_preserved",
    multiple=True,
    metavar="NAME",
    help="Restore from this preserved earlier copy (see cp-status) instead of the backup "
    "of the same ConfigMap; may be given for each of the two.",
)
@click.option(
    "--cr-values",
    "cr_values",
    is_flag=True,
    help="Show the values a person had set in the CR's spec.config that the migration "
    "replaced (kept in ConfigMap connectivity-proxy-backup/connectivity-proxy-cr-before-"
    "migration), against the CR now; with --force, put them back into the CR.",
)
def restore_main(**params: Any) -> None:
    """Restore the legacy Connectivity Proxy configuration from its backup.

    Verifies the backups in connectivity-proxy-backup, then creates kyma-system/connectivity-proxy
    and kyma-system/connectivity-proxy-info where they are absent. One that exists and differs
    is shown as a diff and left alone, unless --force.
    """
    force = params.pop("force")
    from_preserved = tuple(params.pop("from_preserved"))
    cr_values = params.pop("cr_values")
    options = options_from(params)

    def body(run: Run) -> None:
        from backup.restore import Settings, restore
        from common.cli import connect

        outcome = restore(
            connect(options, run),
            Settings(
                dry_run=options.dry_run,
                force=force,
                from_preserved=from_preserved,
                cr_values=cr_values,
            ),
        )
        if outcome.diff and (options.dry_run or cr_values):
            click.echo(outcome.diff, nl=False)
        click.echo(outcome.summary)
        run.summary = outcome.summary

    from common import record

    # Showing the CR's earlier values (--cr-values without --force) changes nothing, so it
    # leaves the chain's record as it is, as a dry run does.
    shows_only = options.dry_run or (cr_values and not force)
    run_step(record.attach(Run("restore"), dry_run=shows_only), options, body)
