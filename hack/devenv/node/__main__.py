"""`make node` / `make node-down` / `make demo-node`:

python -m hack.devenv.node start DIR            # prints the kubeconfig path
python -m hack.devenv.node load-images DIR REF...
python -m hack.devenv.node stop DIR
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path

from hack.devenv.node.host import OWNER, load_state, running_node, unavailable_reason
from hack.devenv.node.node import Node, stop


def start_detached(link: Path) -> Path:
    """For `make node`: reuse a running node whose state `link` names, or start one."""
    if link.is_symlink() and running_node() == link.resolve():
        return link.resolve() / "controlplane" / "kubeconfig"
    if link.is_symlink():
        stop_detached(link)
    folder = Path(tempfile.mkdtemp(prefix="cp-node-"))
    node = Node(folder)
    node.start(held=False)
    link.unlink(missing_ok=True)
    link.symlink_to(folder)
    return node.kubeconfig


def stop_detached(link: Path) -> None:
    """Stop the node `link` names, or else the one that runs on this machine (a test session's
    that was killed, say)."""
    if link.is_symlink():
        folder = link.resolve()
        stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
        link.unlink()
        return
    with contextlib.suppress(OSError):
        folder = Path(OWNER.read_text().strip())
        print(f"stopping the test node in {folder}", file=sys.stderr)
        if not stop(folder):
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str]) -> int:
    usage = "usage: python -m hack.devenv.node start|stop LINK | load-images LINK REF..."
    if len(argv) < 3 or argv[1] not in ("start", "stop", "load-images"):
        print(usage, file=sys.stderr)
        return 2
    link = Path(argv[2]).absolute()
    if argv[1] == "start":
        reason = unavailable_reason() if running_node() != link.resolve() else None
        if reason:
            print(f"cannot start the node: {reason}", file=sys.stderr)
            return 1
        print(start_detached(link))
    elif argv[1] == "stop":
        stop_detached(link)
    else:
        folder = link.resolve()
        state = load_state(folder)
        if state is None:
            print(f"no node in {link}", file=sys.stderr)
            return 1
        Node(folder, node_ip=state["node_ip"], state=state).load_images(argv[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
