"""Key material in memory only: a decoded client key never outlives the process.

The `kubernetes` package (checked against 37.0.3; tests/unit/common/test_package_pins.py tells
when that changes) writes `client-key-data`, `client-certificate-data` and `certificate-
authority-data` decoded into files in the temp directory and removes them at exit (atexit). A
second signal ends the tools with os._exit, which skips atexit, so the key stayed on disk; and
with no writable temp directory (a read-only /tmp) the tools could not start.

Here those values become anonymous memory files (Linux memfd_create), read by OpenSSL through
/proc/self/fd/N: nothing is written to any file system, and the kernel frees them when the
process ends, however it ends. The kubeconfig entries are rewritten in memory to name those
paths, so the package never writes a file. Where memfd or /proc is missing (not Linux), the
tools stop with exit 2 naming what they need, rather than leave a key on disk.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any

from common.errors import UsageError

# (data key, file key) pairs a kubeconfig user and cluster may hold.
USER_DATA = (("client-certificate-data", "client-certificate"), ("client-key-data", "client-key"))
CLUSTER_DATA = (("certificate-authority-data", "certificate-authority"),)

_held: list[int] = []  # the memory files' descriptors: open for the life of the process


def path_for(data: bytes, name: str = "cp-migration") -> str:
    """A path that reads as `data` for as long as this process lives, and no longer."""
    create = getattr(os, "memfd_create", None)
    if create is None:
        raise UsageError(
            "decoded key material is kept in memory only (memfd_create and /proc, on Linux); "
            "this system has no memfd_create: name the key and certificates as files "
            "(client-key, client-certificate, certificate-authority) instead of their -data"
        )
    fd = create(name, getattr(os, "MFD_CLOEXEC", 1))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        path = f"/proc/self/fd/{fd}"
        if not os.path.isfile(path):
            raise UsageError(
                "decoded key material is kept in memory only and read through /proc/self/fd; "
                "/proc is not mounted here: mount it, or name the key and certificates as files "
                "instead of their -data"
            )
    except BaseException:
        os.close(fd)
        raise
    _held.append(fd)
    return path


def in_memory(entry: dict[str, Any], pairs: tuple[tuple[str, str], ...], where: str) -> None:
    """Each `*-data` value of a kubeconfig entry replaced, in place, by a memory file's path
    under the file key (the package prefers -data; with it gone, it reads the path)."""
    for data_key, file_key in pairs:
        value = entry.get(data_key)
        if not value:
            continue
        try:
            decoded = base64.b64decode(str(value), validate=False)
        except (binascii.Error, ValueError) as err:
            raise UsageError(f"{where}: {data_key} is not base64: {err}") from err
        entry[file_key] = path_for(decoded, file_key)
        del entry[data_key]
