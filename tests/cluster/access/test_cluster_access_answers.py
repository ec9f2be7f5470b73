"""Only the apiserver's own answers are cluster state (issue 21), on the real apiserver.

A server URL can reach something else: a reverse proxy with a wrong path prefix (its own 404
pages), a redirect with an empty body (http:// for https://, a login page), an HTML page.
kubectl reports an error for each; every tool must too (exit 1, never 0, never 3), naming the
server URL, the status, the content type and the first bytes, and change nothing. A 404 still
means "absent" where it is the apiserver's: a Status with reason NotFound, or a group/version
that discovery (read once) says is not served.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.cluster.client import Kube, resource_path
from common.cluster.kubeconfig import resolve
from hack.devenv import legacy
from hack.devenv.cluster import Cluster
from tests.support import chain
from tests.support.webservers import HtmlServer, PrefixProxy, RedirectServer, WebServer

TOOLS: tuple[tuple[chain.Step, tuple[str, ...]], ...] = (
    (chain.MIGRATOR, ()),
    (chain.BACKUP, ()),
    (chain.RESTORE, ()),
    (chain.CLEANER, ()),
    (chain.STATUS, ()),
)


def at_server(cluster: Cluster, path: Path, server: str) -> Path:
    config = json.loads(cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = server
    path.write_text(json.dumps(config))
    return path


def every_tool_fails_naming(kubeconfig: Path, server: str, *words: str) -> None:
    for step, args in TOOLS:
        result = chain.run_in_process(step, kubeconfig, *args)
        output = result.output
        assert result.exit_code == 1, f"{step.name}: {output}"
        assert f"{server} did not answer as a Kubernetes apiserver" in output, output
        for word in words:
            assert word in output, f"{step.name}: {word!r} not in {output}"
        assert "Traceback" not in output and "nothing to" not in output, output


def unchanged(cluster: Cluster, before: dict[str, object] | None) -> None:
    after = cluster.cr()
    assert after is not None and before is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]  # type: ignore[index]


def test_a_wrong_path_prefix_behind_a_reverse_proxy_is_exit_1_for_every_tool(
    cluster: Cluster, tmp_path: Path
) -> None:
    legacy.fresh_install(cluster)
    before = cluster.cr()
    with PrefixProxy(cluster.kubeconfig, "/k8s") as proxy:
        right = at_server(cluster, tmp_path / "right", proxy.url + "/k8s")
        result = chain.run_in_process(chain.STATUS, right)
        assert result.exit_code == 0, "the proxy itself works: " + result.output
        server = proxy.url + "/wrong"
        every_tool_fails_naming(
            at_server(cluster, tmp_path / "wrong", server),
            server,
            "HTTP 404",
            "text/html",
            "404 Not Found",
            "wrong path",
        )
    unchanged(cluster, before)


@pytest.mark.parametrize("status", [302, 308])
def test_a_redirect_with_an_empty_body_is_exit_1_for_every_tool(
    cluster: Cluster, tmp_path: Path, status: int
) -> None:
    legacy.fresh_install(cluster)
    before = cluster.cr()
    with RedirectServer(status) as server:
        every_tool_fails_naming(
            at_server(cluster, tmp_path / "k", server.url),
            server.url,
            f"HTTP {status}",
            "Location: https://login.example.test/",
            "empty body",
            "redirect",
        )
    unchanged(cluster, before)


def test_an_html_page_is_exit_1_for_every_tool(cluster: Cluster, tmp_path: Path) -> None:
    legacy.fresh_install(cluster)
    before = cluster.cr()
    with HtmlServer() as server:
        every_tool_fails_naming(
            at_server(cluster, tmp_path / "k", server.url),
            server.url,
            "HTTP 200",
            "text/html",
            "Sign in",
        )
    unchanged(cluster, before)


def test_first_bytes_are_redacted(tmp_path: Path) -> None:
    from common.cluster import answers

    text = answers.describe(
        200,
        {"content-type": "text/plain"},
        b"Authorization: Bearer abc.def.ghi password: hunter2-hunter2 ok",
    )
    assert "abc.def.ghi" not in text and "hunter2" not in text, text


def test_an_apiservers_404s_still_mean_absent_with_discovery_read_once(cluster: Cluster) -> None:
    kube = Kube(resolve(str(cluster.kubeconfig), None))
    # A Status NotFound: a core object that does not exist.
    assert kube.get(resource_path("", "v1", "configmaps", "default", "cp-none")) is None
    before = kube.request_count
    # A group no CRD serves: the apiserver answers a plain-text 404; discovery confirms.
    for name in ("one", "two"):
        path = resource_path("nothing.example.com", "v1", "things", "default", name)
        assert kube.get(path) is None
    assert kube.request_count - before == 3, "two GETs and one GET /apis"
    gone = resource_path("nothing.example.com", "v1", "things", "default", "x")
    assert kube.delete(gone) is False


def test_a_server_that_answers_as_none_is_never_cluster_state(tmp_path: Path) -> None:
    """The client alone: whatever a non-apiserver answers, `get` never says "absent"."""
    from common.cluster.answers import NotApiserver

    servers: list[WebServer] = [RedirectServer(302), HtmlServer()]
    for server in servers:
        with server:
            config = {
                "clusters": [{"name": "c", "cluster": {"server": server.url}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
            (tmp_path / "k").write_text(json.dumps(config))
            kube = Kube(resolve(str(tmp_path / "k"), None, {}))
            with pytest.raises(NotApiserver) as caught:
                kube.get(resource_path("apps", "v1", "deployments", "x", "y"))
            assert caught.value.exit_code == 1
