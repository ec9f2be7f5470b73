"""`make cluster-down` (hack.devenv.controlplane stop) leaves nothing stale: no process, no
state folder, no kubeconfig of a stopped apiserver, no dangling audit.log link."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hack.devenv import controlplane


def test_cluster_down_leaves_nothing_behind(tmp_path: Path) -> None:
    # What `make cluster` leaves: a folder with the pids, the state folder's path, the
    # kubeconfig, and a link to the audit log inside the state folder.
    state = tmp_path / "state-folder"
    state.mkdir()
    (state / "audit.log").write_text("{}\n")
    folder = tmp_path / ".cluster"
    folder.mkdir()
    # Detached, as `make cluster` leaves etcd and the apiserver: not our children (no zombie
    # to reap), each the leader of its own process group.
    pids = [
        int(
            subprocess.run(
                ["sh", "-c", "setsid sleep 600 >/dev/null 2>&1 & echo $!"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for _ in range(2)
    ]
    (folder / "pids").write_text(" ".join(map(str, pids)) + "\n")
    (folder / "state").write_text(str(state))
    (folder / "kubeconfig").write_text("{}")
    (folder / "audit.log").symlink_to(state / "audit.log")

    assert controlplane.main([sys.argv[0], "stop", str(folder)]) == 0

    assert not any(controlplane._alive(pid) for pid in pids)
    assert not state.exists()
    assert not folder.exists() and not folder.is_symlink(), list(folder.iterdir())
    # A second cluster-down is harmless.
    assert controlplane.main([sys.argv[0], "stop", str(folder)]) == 0


def test_cluster_down_keeps_what_it_did_not_make(tmp_path: Path) -> None:
    folder = tmp_path / ".cluster"
    folder.mkdir()
    (folder / "kubeconfig").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    controlplane.stop_detached(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
