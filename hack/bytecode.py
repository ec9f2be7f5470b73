"""Bytecode for exactly what the tools run, at image build (see the Dockerfiles):

    python3 hack/bytecode.py STAGE

imports every module of the tools and sends one request to a closed loopback port through the
real client (so that what urllib3 and ssl import on first use counts too), then compiles each
imported module with compileall, `unchecked-hash` (valid whatever the files' mtimes): the
project and its dependencies in place, and the standard library modules the base image has no
bytecode for into STAGE (same paths), which the runtime stage copies over its own /. No step
then compiles anything at start, on a read-only root with PYTHONDONTWRITEBYTECODE."""

from __future__ import annotations

import compileall
import contextlib
import importlib
import importlib.util
import json
import os
import pkgutil
import py_compile
import shutil
import sys
import sysconfig
import tempfile

TOOL_PACKAGES = ("common", "migrator", "backup", "cleaner")


def import_everything() -> None:
    for name in TOOL_PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)


def one_failing_request() -> None:
    from common.cluster.client import Kube
    from common.cluster.kubeconfig import resolve
    from common.errors import CpError

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kubeconfig")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(config, handle)
        kube = Kube(resolve(path, None, {}), retry_seconds=0.01, request_timeout=0.5)
        with contextlib.suppress(CpError):
            kube.get("/api/v1/namespaces/x")


def main() -> None:
    import logging

    stage = sys.argv[1]
    logging.disable(logging.CRITICAL)
    # Also what is compiled but never lands in sys.modules (an optional import that fails).
    compiled_from_source: set[str] = set()

    def on_compile(event: str, args: tuple[object, ...]) -> None:
        if event == "compile" and len(args) > 1 and isinstance(args[1], str):
            compiled_from_source.add(args[1])

    sys.addaudithook(on_compile)
    import_everything()
    one_failing_request()
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
    counts = {"compiled": 0, "stdlib staged": 0, "stdlib had bytecode": 0}
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    for path in sorted(p for p in files | compiled_from_source if p):
        if not (path.endswith(".py") and os.path.isfile(path)):
            continue
        path = os.path.realpath(path)
        cached = importlib.util.cache_from_source(path)
        in_stdlib = path.startswith(stdlib)
        if in_stdlib and os.path.exists(cached):
            counts["stdlib had bytecode"] += 1
            continue
        mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
        if not compileall.compile_file(path, quiet=2, invalidation_mode=mode):
            raise SystemExit(f"cannot compile {path}")
        counts["compiled"] += 1
        if in_stdlib:
            target = os.path.join(stage, cached.lstrip(os.sep))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(cached, target)
            counts["stdlib staged"] += 1
    print("bytecode:", ", ".join(f"{n} {what}" for what, n in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
