"""Bytecode for every module a start can import, at image build (see the Dockerfiles):

    python3 hack/bytecode.py STAGE

Every module of the shipped packages is compiled, whether a run imports it or not (a help or
error path imports modules a normal run never does, such as click/_textwrap.py): the project
and its dependencies, in place, with compileall, `unchecked-hash` (valid whatever the files'
mtimes). The standard library is large and the base image has bytecode for most of it: the
modules it has none for are found by importing every module of the tools, sending one request
to a closed loopback port through the real client (what urllib3 and ssl import on first use),
and running every console script's --help, --version and a usage error; they are compiled into
STAGE (same paths), which the runtime stage copies over its own /. No step then compiles
anything at start, on a read-only root with PYTHONDONTWRITEBYTECODE."""

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


CONSOLE_SCRIPTS = (
    ("migrator.cli", "main"),
    ("backup.cli", "backup_main"),
    ("backup.cli", "restore_main"),
    ("cleaner.cli", "main"),
    ("cleaner.status_cli", "main"),
)


def help_and_error_paths() -> None:
    """Each console script's --help, --version and a usage error, in this process (output
    discarded): what click imports only there (its text wrapping, its error formatting)."""
    for module, attribute in CONSOLE_SCRIPTS:
        command = getattr(importlib.import_module(module), attribute)
        for args in (["--help"], ["--version"], ["--no-such-option"]):
            with (
                open(os.devnull, "w", encoding="utf-8") as sink,
                contextlib.redirect_stdout(sink),
                contextlib.redirect_stderr(sink),
                contextlib.suppress(SystemExit, Exception),
            ):
                command.main(args, prog_name=module, standalone_mode=True)


def shipped_packages() -> list[str]:
    """The folders the images ship Python packages in: the venv's site-packages (the
    dependencies) and the tools' packages (in the image alone in /opt/app; in a checkout,
    the package folders only, not the tests beside them)."""
    found = [os.path.realpath(sysconfig.get_paths()["purelib"])]
    for name in TOOL_PACKAGES:
        found.append(
            os.path.dirname(os.path.realpath(importlib.import_module(name).__file__ or ""))
        )
    return list(dict.fromkeys(path for path in found if os.path.isdir(path)))


def compile_shipped(mode: py_compile.PycInvalidationMode) -> int:
    """Every .py file of the shipped packages; the count compiled."""
    count = 0
    for folder in shipped_packages():
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(root, name)
                    # A file that is no valid Python of this version (a template, a Python 2
                    # leftover) is never imported either: it is skipped, not fatal.
                    if compileall.compile_file(path, quiet=2, invalidation_mode=mode):
                        count += 1
    return count


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
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    shipped = compile_shipped(mode)
    import_everything()
    one_failing_request()
    help_and_error_paths()
    stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep
    counts = {"shipped compiled": shipped, "stdlib staged": 0, "stdlib had bytecode": 0}
    files = {getattr(module, "__file__", None) for module in list(sys.modules.values())}
    for path in sorted(p for p in files | compiled_from_source if p):
        if not (path.endswith(".py") and os.path.isfile(path)):
            continue
        path = os.path.realpath(path)
        if not path.startswith(stdlib):
            continue  # a shipped package: compiled whole above
        cached = importlib.util.cache_from_source(path)
        if os.path.exists(cached):
            counts["stdlib had bytecode"] += 1
            continue
        if not compileall.compile_file(path, quiet=2, invalidation_mode=mode):
            raise SystemExit(f"cannot compile {path}")
        target = os.path.join(stage, cached.lstrip(os.sep))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(cached, target)
        counts["stdlib staged"] += 1
    print("bytecode:", ", ".join(f"{n} {what}" for what, n in counts.items()), file=sys.stderr)


if __name__ == "__main__":
    main()
