"""`make demo`: a realistic legacy 2.9.3 installation on the local control plane, then the
migration steps in init-container order, then what changed."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from common import diff
from tests.support import legacy
from tests.support.cluster import FIXTURES, Cluster

# (console script, click command) in init-container order; steps not built yet are skipped.
STEPS = (
    ("cp-migrator", "migrator.cli:main"),
    ("cp-backup", "backup.cli:backup_main"),
    ("cp-cleaner", "cleaner.cli:main"),
)
STATUS = ("cp-status", "cleaner.status_cli:main")


def load(entry: str) -> Any:
    module_name, _, attribute = entry.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None


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
    before = cluster.cr() or {}

    runner = CliRunner()
    for script, entry in STEPS:
        command = load(entry)
        if command is None:
            print(f"== {script}: not built yet, skipped")
            continue
        print(f"== {script}")
        result = runner.invoke(
            command, ["--kubeconfig", args.kubeconfig, "--log-format", "text"]
        )
        sys.stdout.write(result.stderr)
        sys.stdout.write(result.stdout)
        if result.exit_code != 0:
            print(f"== {script} exited {result.exit_code}; stopping, as the kubelet would")
            return result.exit_code

    after = cluster.cr() or {}
    print("== what changed in kyma-system/connectivity-proxy")
    print(
        diff.unified(
            {"metadata": {"annotations": before["metadata"].get("annotations") or {}},
             "spec": before.get("spec")},
            {"metadata": {"annotations": after["metadata"].get("annotations") or {}},
             "spec": after.get("spec")},
            "before",
            "after",
        )
        or "(nothing)"
    )
    status = load(STATUS[1])
    if status is not None:
        print(f"== {STATUS[0]}")
        result = runner.invoke(status, ["--kubeconfig", args.kubeconfig])
        sys.stdout.write(result.stdout)
    else:
        print("== annotations:", json.dumps(after["metadata"].get("annotations"), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
