"""`make demo`: a realistic legacy 2.9.3 installation on the local control plane, then the
migration steps in init-container order, then what changed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from click.testing import CliRunner

import backup.cli
import cleaner.cli
import cleaner.status_cli
import migrator.cli
from common import diff
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster

# (console script, click command) in init-container order.
STEPS = (
    ("cp-migrator", migrator.cli.main),
    ("cp-backup", backup.cli.backup_main),
    ("cp-cleaner", cleaner.cli.main),
)


def service_mappings(count: int) -> list[dict[str, object]]:
    """A few ServiceMappings as users of the legacy component created them."""
    return [
        {
            "apiVersion": "connectivityproxy.sap.com/v1",
            "kind": "ServiceMapping",
            "metadata": {"name": f"demo-mapping-{index}"},
            "spec": {
                "type": "RFC",
                "subaccountId": "1b3c5d7e-9f21-4a6b-8c0d-2e4f6a8b0c1d",
                "serviceId": f"demo-service-{index}",
                "internalAddress": f"erp-{index}.example.internal:3300",
            },
        }
        for index in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args()
    cluster = Cluster(Path(args.kubeconfig))

    print("== resetting the demo namespaces and installing a legacy 2.9.3 installation")
    cluster.reset()
    for name in ("crd-connectivityproxy.yaml", "crds-third-party.yaml"):
        cluster.apply_file(FIXTURES / name)
    legacy.install(cluster)
    cluster.apply_file(FIXTURES / "legacy-objects.yaml")
    cluster.apply_file(FIXTURES / "legacy-istio-objects.yaml")
    cluster.apply(service_mappings(3))
    before = cluster.cr() or {}

    runner = CliRunner()
    for script, command in STEPS:
        print(f"== {script}")
        result = runner.invoke(command, ["--kubeconfig", args.kubeconfig, "--log-format", "text"])
        sys.stdout.write(result.stderr)
        sys.stdout.write(result.stdout)
        if result.exit_code != 0:
            print(f"== {script} exited {result.exit_code}; stopping, as the kubelet would")
            return result.exit_code

    after = cluster.cr() or {}
    print("== what changed in kyma-system/connectivity-proxy")
    print(
        diff.unified(
            {
                "metadata": {"annotations": before["metadata"].get("annotations") or {}},
                "spec": before.get("spec"),
            },
            {
                "metadata": {"annotations": after["metadata"].get("annotations") or {}},
                "spec": after.get("spec"),
            },
            "before",
            "after",
        )
        or "(nothing)"
    )
    print("== cp-status")
    result = runner.invoke(cleaner.status_cli.main, ["--kubeconfig", args.kubeconfig])
    sys.stdout.write(result.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
