"""kubectl's reading of kubeconfig files where the `kubernetes` package reads them otherwise
(checked against kubernetes 37.0.3; tests/unit/common/test_package_pins.py fails when the
package changes what these mend, so that they can go):

- every relative path of a user, cluster or exec plugin is resolved against the file that
  defined it (the package resolves a user's client-certificate, client-key and exec command
  against the file of the context's *cluster*);
- booleans are YAML booleans: the package takes any non-empty string, `"false"` included, as
  true; kubectl refuses the file (`cannot unmarshal string into ... of type bool`);
- `insecure-skip-tls-verify: true` together with a CA is refused, as kubectl refuses it;
- empty files in KUBECONFIG are skipped (the package refuses them), a directory is refused
  (the package skips it);
- without HOME, the default file is `.kube/config` under the working directory, as kubectl's
  (client-go's homedir.HomeDir is $HOME; the package asks the passwd database and fails).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from common.errors import UsageError

# Every boolean of a kubeconfig (client-go's clientcmd/api/v1 types).
CLUSTER_BOOLEANS = ("insecure-skip-tls-verify", "disable-compression")
EXEC_BOOLEANS = ("provideClusterInfo",)
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")


def home_file(env: dict[str, str], home: Path | None) -> Path:
    """~/.kube/config as kubectl finds it: $HOME, and without one the working directory."""
    base = home if home is not None else Path(env.get("HOME") or "")
    return base / ".kube" / "config"


def usable_files(listed: list[str]) -> tuple[list[str], list[str]]:
    """(files to read, empty files skipped) of a KUBECONFIG list: missing and empty files
    are skipped, as kubectl skips them; a directory is a usage error, as in kubectl."""
    usable: list[str] = []
    empty: list[str] = []
    for path in listed:
        entry = Path(path)
        if entry.is_dir():
            raise UsageError(
                f"KUBECONFIG names {path}, a directory, not a kubeconfig file (kubectl refuses "
                "it too); name the file in it"
            )
        if not entry.is_file():
            continue
        try:
            blank = not entry.read_bytes().strip()
        except OSError as err:
            raise UsageError(f"kubeconfig {path}: {err.strerror}") from err
        (empty if blank else usable).append(path)
    return usable, empty


def check_types(path: str, data: Any) -> None:
    """Booleans are booleans and interactiveMode one of kubectl's, in every entry of a file
    (kubectl decodes each file whole, so a wrong type anywhere fails)."""
    if not isinstance(data, dict):
        return
    for entry in data.get("clusters") or []:
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if isinstance(cluster, dict):
            where = f"clusters[name={entry.get('name')}].cluster"
            for key in CLUSTER_BOOLEANS:
                _boolean(path, where, key, cluster)
    for entry in data.get("users") or []:
        user = entry.get("user") if isinstance(entry, dict) else None
        plugin = user.get("exec") if isinstance(user, dict) else None
        if isinstance(plugin, dict):
            where = f"users[name={entry.get('name')}].user.exec"
            for key in EXEC_BOOLEANS:
                _boolean(path, where, key, plugin)
            mode = plugin.get("interactiveMode")
            if mode is not None and mode not in INTERACTIVE_MODES:
                raise UsageError(
                    f"kubeconfig {path}: {where}.interactiveMode: {mode!r} is not one of "
                    f"{', '.join(INTERACTIVE_MODES)} (kubectl refuses it too)"
                )


def _boolean(path: str, where: str, key: str, holder: dict[str, Any]) -> None:
    if key in holder and not isinstance(holder[key], bool) and holder[key] is not None:
        raise UsageError(
            f"kubeconfig {path}: {where}.{key}: {holder[key]!r} is a "
            f"{type(holder[key]).__name__}, not a boolean; write true or false without quotes "
            "(kubectl refuses it too; the kubernetes package would take any text as true)"
        )


def check_cluster(path: str, name: str, cluster: dict[str, Any]) -> None:
    if cluster.get("insecure-skip-tls-verify") is True and (
        cluster.get("certificate-authority") or cluster.get("certificate-authority-data")
    ):
        raise UsageError(
            f"kubeconfig {path}: cluster {name!r} sets insecure-skip-tls-verify: true and a "
            "certificate authority; kubectl refuses the combination: drop one of them"
        )


def anchor(base_file: str | None, value: Any) -> Any:
    """A relative path made absolute against the directory of the file that defines it."""
    if not isinstance(value, str) or not value or not base_file or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base_file)), value))


def anchor_user(user_file: str | None, user: dict[str, Any]) -> None:
    """client-certificate, client-key, tokenFile and an exec command given as a relative
    path with a slash (a bare name is looked up in PATH, as kubectl does), in place."""
    for key in ("client-certificate", "client-key", "tokenFile"):
        if key in user:
            user[key] = anchor(user_file, user[key])
    plugin = user.get("exec")
    if isinstance(plugin, dict) and "/" in str(plugin.get("command") or ""):
        plugin["command"] = anchor(user_file, plugin["command"])


def anchor_cluster(cluster_file: str | None, cluster: dict[str, Any]) -> None:
    if "certificate-authority" in cluster:
        cluster["certificate-authority"] = anchor(cluster_file, cluster["certificate-authority"])
