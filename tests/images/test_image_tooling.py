"""Pure units: the image tests install what they need (hack/podman-setup.sh, as .ci/run does)
or skip naming what is missing; under CI=true they fail instead of skipping."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from hack.devenv import images


def without(monkeypatch: pytest.MonkeyPatch, *tools: str) -> None:
    real = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name in tools else real(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)
    monkeypatch.setattr(images, "_in_sbin", lambda tool: tool not in tools and tool != "x")


def test_a_missing_tool_that_cannot_be_installed_is_a_skip_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    without(monkeypatch, "debootstrap")
    monkeypatch.setattr(images, "_can_install", lambda: "not root and sudo asks for a password")
    with pytest.raises(pytest.skip.Exception) as skipped:
        images.ensure_tools(need_debootstrap=True)
    assert "debootstrap missing" in str(skipped.value)
    assert "sudo asks for a password" in str(skipped.value)
    assert "make podman" in str(skipped.value)


def test_under_ci_the_same_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    without(monkeypatch, "podman", "runc")
    monkeypatch.setattr(images, "_can_install", lambda: "no apt-get")
    with pytest.raises(pytest.fail.Exception) as failed:
        images.ensure_tools(need_debootstrap=False)
    assert "podman, runc missing" in str(failed.value)


def test_debootstrap_is_not_needed_once_the_base_image_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "debootstrap")
    assert "debootstrap" not in images.missing_tools(need_debootstrap=False)
    assert "debootstrap" in images.missing_tools(need_debootstrap=True)


def test_what_is_missing_is_installed_with_the_setup_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("CI", raising=False)
    missing = {"debootstrap"}
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name in missing else real(name)
    )
    monkeypatch.setattr(images, "_in_sbin", lambda tool: False)
    monkeypatch.setattr(images, "_can_install", lambda: None)
    monkeypatch.setattr(images, "LOG_DIR", tmp_path)
    ran: list[list[str]] = []

    def fake_run(args: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        ran.append(args)
        missing.clear()  # what the script does
        return subprocess.CompletedProcess(args, 0, "installed\n", None)

    monkeypatch.setattr(subprocess, "run", fake_run)
    images.ensure_tools(need_debootstrap=True)
    assert ran == [["bash", images.SETUP_SCRIPT]]
    assert (tmp_path / "podman-setup.log").read_text() == "installed\n"
