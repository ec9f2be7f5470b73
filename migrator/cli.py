"""cp-migrator command line: options in, core out, exit code from common.runner."""

from __future__ import annotations

from typing import Any

import click

from common.cli import CONTEXT_SETTINGS, EXIT_CODES, options_from, run_step, shared_options
from common.runner import Run


@click.command(context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES)
@shared_options
@click.option(
    "--service-key-secret",
    envvar="CP_SERVICE_KEY_SECRET",
    help="Secret in kyma-system with the Connectivity service key (shared tenant mode). "
    "Default: connectivity-proxy-service-key if it exists, else connectivity-service-service-key.",
)
@click.option(
    "--migrate-orphaned",
    envvar="CP_MIGRATE_ORPHANED",
    is_flag=True,
    help="Migrate legacy ConfigMaps that remain without a legacy installation (left alone "
    "by default: they may be stale).",
)
def main(**params: Any) -> None:
    """Move the legacy Connectivity Proxy configuration into the ConnectivityProxy CR.

    Reads kyma-system/connectivity-proxy (key connectivity-proxy-config.yml) and the ports in
    kyma-system/connectivity-proxy-info, writes them into the CR kyma-system/connectivity-proxy
    and marks it connectivityproxy.sap.com/migrated=true.
    """
    service_key_secret = params.pop("service_key_secret") or None
    migrate_orphaned = params.pop("migrate_orphaned")
    options = options_from(params)

    def body(run: Run) -> None:
        from common.cli import connect
        from migrator.core import Settings, migrate

        outcome = migrate(
            connect(options, run),
            Settings(
                dry_run=options.dry_run,
                service_key_secret=service_key_secret,
                migrate_orphaned=migrate_orphaned,
            ),
        )
        if outcome.diff and options.dry_run:
            click.echo(outcome.diff, nl=False)
        click.echo(outcome.summary)
        run.summary, run.attention = outcome.summary, outcome.attention

    from common import record

    run_step(record.attach(Run("migrator"), dry_run=options.dry_run), options, body)
