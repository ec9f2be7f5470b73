"""Bad input, case by case: each is refused with exit 3 (1 where a later run may get past it),
a message that names the object and the key or field path, and not a single write.

"No write" is proven twice: from the apiserver's audit log (no create/update/patch/delete
from a `cp-migration/*` User-Agent, dry runs aside) and from unchanged resourceVersions.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import yaml

from common import kyma
from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import FIXTURES, Cluster
from migrator.config_yaml import parse_yaml_mapping
from tests.support import chain
from tests.support.chain import BACKUP, CLEANER, MIGRATOR, RESTORE, Step

CONFIG_MAP = "kyma-system/connectivity-proxy"
INFO_MAP = "kyma-system/connectivity-proxy-info"
KEY = kyma.CONFIG_KEY
BACKUP_NAMESPACE = "connectivity-proxy-backup"
BASE = legacy.legacy_configmap()["data"][KEY]
# How the migrator names the YAML it parses: object and key.
WHERE = (CONFIG_MAP, KEY)

Setup = Callable[[Cluster], None]


@dataclass(frozen=True)
class Case:
    id: str
    setup: Setup
    names: tuple[str, ...]  # what the message must name: the object, and the key or field
    step: Step = MIGRATOR
    exit_code: int = 3
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


# -- building blocks ---------------------------------------------------------------------------


def config(text: str) -> Setup:
    return lambda cluster: legacy.install(cluster, config_text=text)


def replaced(old: str, new: str) -> str:
    assert old in BASE, old
    return str(BASE).replace(old, new, 1)


def info(**ports: str) -> Setup:
    return lambda cluster: legacy.install(cluster, info=legacy.legacy_info(**ports))


def info_without(key: str) -> Setup:
    def setup(cluster: Cluster) -> None:
        configmap = legacy.legacy_info()
        del configmap["data"][key]
        legacy.install(cluster, info=configmap)

    return setup


def configmap_with(data: dict[str, str], binary: dict[str, str] | None = None) -> Setup:
    def setup(cluster: Cluster) -> None:
        configmap = legacy.legacy_configmap()
        configmap["data"] = data
        if binary is not None:
            configmap["binaryData"] = binary
        legacy.install(cluster, configmap=configmap)

    return setup


def install(*, with_cr: bool = True, with_configmap: bool = True, with_info: bool = True) -> Setup:
    return lambda cluster: legacy.install(
        cluster, with_cr=with_cr, with_configmap=with_configmap, with_info=with_info
    )


def shared_mode(cluster: Cluster) -> None:
    legacy.install(cluster, config_text=replaced("tenantMode: dedicated", "tenantMode: shared"))


def without_crd(cluster: Cluster) -> None:
    legacy.install(cluster, with_cr=False)
    cluster.delete_crd(chain.CP_CRD)


def billion_laughs() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 10):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 9)}]")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    text, indent = "", ""
    for level in range(depth):
        text += f"{indent}level{level}:\n"
        indent += "  "
    return text + f"{indent}leaf: 1\n"


def migrated_and_backed_up(cluster: Cluster) -> None:
    legacy.install_standard(cluster)
    for step in (MIGRATOR, BACKUP):
        result = chain.run_in_process(step, cluster.kubeconfig)
        assert result.exit_code == 0, result.output


def then(*changes: Callable[[Cluster], None]) -> Setup:
    def setup(cluster: Cluster) -> None:
        migrated_and_backed_up(cluster)
        for change in changes:
            change(cluster)

    return setup


def tamper_backup(name: str) -> Callable[[Cluster], None]:
    def change(cluster: Cluster) -> None:
        path = resource_path("", "v1", "configmaps", BACKUP_NAMESPACE, name)
        backup = cluster.kube.request("GET", path)
        key = sorted(backup["data"])[0]
        backup["data"][key] += "# tampered\n"
        cluster.kube.replace(path, backup)

    return change


def drop_digest(cluster: Cluster) -> None:
    path = resource_path("", "v1", "configmaps", BACKUP_NAMESPACE, "connectivity-proxy")
    cluster.kube.merge_patch(
        path,
        {"metadata": {"annotations": {"backup.connectivityproxy.sap.com/digest": None}}},
        retry_safe=True,
    )


def change_source(name: str) -> Callable[[Cluster], None]:
    def change(cluster: Cluster) -> None:
        path = resource_path("", "v1", "configmaps", "kyma-system", name)
        cluster.kube.merge_patch(path, {"data": {"changed-after-backup": "yes"}}, retry_safe=True)

    return change


def delete_backups(cluster: Cluster) -> None:
    for name in ("connectivity-proxy", "connectivity-proxy-info"):
        cluster.kube.delete(resource_path("", "v1", "configmaps", BACKUP_NAMESPACE, name))


def migrated_only(cluster: Cluster) -> None:
    legacy.install_standard(cluster)
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output


def terminating_backup_namespace(cluster: Cluster) -> None:
    migrated_only(cluster)
    namespace = resource_path("", "v1", "namespaces", name=BACKUP_NAMESPACE)
    cluster.ensure_namespace(BACKUP_NAMESPACE)
    # No controller manager: the namespace stays Terminating until a test finalizes it.
    cluster.kube.delete(namespace)


def restore_over_changed(cluster: Cluster) -> None:
    migrated_and_backed_up(cluster)
    change_source("connectivity-proxy")(cluster)


# -- the cases -----------------------------------------------------------------------------------

PORT_LINE = "externalPort: 443"
SUBDOMAIN_LINE = "subaccountSubdomain: example-subdomain"
HTTP_ENABLED = "    http:\n      enabled: true"
PORT_FIELD = ".servers.businessDataTunnel.externalPort"
HTTP_PORT = "onpremise_proxy_http_port"
LDAP_PORT = "onpremise_proxy_ldap_port"
SOCKS5_PORT = "onpremise_socks5_proxy_port"


def port(value: str) -> Setup:
    return config(replaced(PORT_LINE, f"externalPort: {value}"))


def subdomain(value: str) -> Setup:
    return config(replaced(SUBDOMAIN_LINE, f"subaccountSubdomain: {value}"))


def tenant_mode(value: str) -> Setup:
    return config(replaced("tenantMode: dedicated", f"tenantMode: {value}"))


def in_the_cr(field: str) -> tuple[str, str]:
    """What a refusal by the CRD's schema names: the ConfigMap and the CR's field path."""
    return (CONFIG_MAP, f"spec.config{field}")


CASES = [
    # YAML that is not YAML, or not one mapping
    Case("invalid YAML: unclosed flow sequence", config(BASE + "extra: [1, 2\n"), WHERE),
    Case(
        "invalid YAML: unclosed quote",
        config(replaced('highAvailabilityMode: "off"', 'highAvailabilityMode: "off')),
        WHERE,
    ),
    Case(
        "invalid YAML: mapping inside a scalar",
        config("tenantMode: dedicated\nsubaccountId: a: b\n"),
        WHERE,
    ),
    Case("YAML bomb: alias expansion", config(billion_laughs()), (*WHERE, "alias")),
    Case("YAML alias referring to itself", config("loop: &x [*x]\n"), (*WHERE, "itself")),
    Case("YAML nested deeper than the limit", config(nested(80)), (*WHERE, "deeper")),
    Case("top-level list", config("- tenantMode\n- dedicated\n"), (*WHERE, "list")),
    Case("top-level string", config("tenantMode dedicated\n"), (*WHERE, "not a mapping")),
    Case("top-level number", config("42\n"), (*WHERE, "not a mapping")),
    Case(
        "tabs for indentation",
        config(replaced("  businessDataTunnel:", "\tbusinessDataTunnel:")),
        (*WHERE, "tab"),
    ),
    Case(
        "duplicate top-level key",
        config(BASE + "subaccountId: another-one\n"),
        (*WHERE, "duplicate key 'subaccountId'"),
    ),
    Case(
        "duplicate nested key",
        config(replaced(f"{HTTP_ENABLED}\n", f"{HTTP_ENABLED}\n      enabled: false\n")),
        (*WHERE, "duplicate key 'enabled'"),
    ),
    Case("empty document", config(""), (*WHERE, "empty")),
    Case("whitespace-only document", config("  \n\n"), (*WHERE, "empty")),
    Case("comment-only document", config("# nothing configured\n"), (*WHERE, "empty")),
    Case("null document", config("~\n"), (*WHERE, "empty")),
    Case("two YAML documents", config(BASE + "---\ntenantMode: shared\n"), WHERE),
    # characters and numbers the YAML reader or Python cannot take (a traceback and exit 1,
    # retried forever by the kubelet, before they were caught)
    *(
        Case(
            f"control character {name} in a value",
            subdomain(f"example{char}subdomain"),
            (*WHERE, f"U+{ord(char):04X}", "line 3, column 29"),
        )
        for name, char in (("NUL", "\x00"), ("ESC", "\x1b"), ("C1 CSI", "\x9b"))
    ),
    Case("integer of more than 4,300 digits", port("9" * 4400), (*WHERE, "4400 digits", "line 13")),
    Case(
        "YAML 1.1 boolean word where the CRD wants a port",
        port("on"),
        (*in_the_cr(PORT_FIELD), "YAML 1.1"),
    ),
    Case(
        "flow collections nested 5,000 deep",
        config(BASE + "deep: " + "[" * 5000 + "\n"),
        (*WHERE, "deeper"),
    ),
    # values YAML has but JSON (and so the CR) does not
    Case("non-string key", config(BASE + "1: one\n"), (*WHERE, "key 1")),
    Case(
        "null value",
        config(replaced(SUBDOMAIN_LINE, "subaccountSubdomain:")),
        (*WHERE, ".subaccountSubdomain"),
    ),
    # A date where the CRD wants a number (where it wants text, the date's text is kept).
    Case("unquoted date", port("2024-01-01"), (*WHERE, PORT_FIELD)),
    Case("binary tag", subdomain("!!binary aGk="), (*WHERE, ".subaccountSubdomain")),
    Case(
        "python object tag (never constructed)",
        config(BASE + 'pwn: !!python/object/apply:os.system ["touch /tmp/cp-pwned"]\n'),
        (*WHERE, "python/object"),
    ),
    Case("infinite number", port(".inf"), (*WHERE, PORT_FIELD)),
    # wrong types and values, found by the apiserver's strict dry run against the CRD schema
    Case(
        "string for a boolean",
        config(replaced(HTTP_ENABLED, '    http:\n      enabled: "true"')),
        in_the_cr(".servers.proxy.http.enabled"),
    ),
    Case(
        "mapping for a port",
        config(replaced(PORT_LINE, "externalPort:\n      value: 443")),
        in_the_cr(PORT_FIELD),
    ),
    Case("string for a port", port('"443"'), in_the_cr(PORT_FIELD)),
    Case("port out of range in the config", port("70000"), in_the_cr(PORT_FIELD)),
    Case("negative port in the config", port("-443"), in_the_cr(PORT_FIELD)),
    Case(
        "field unknown to the CRD (never pruned)",
        config(BASE + "madeUpSetting: 1\n"),
        in_the_cr(".madeUpSetting"),
    ),
    Case(
        "nested field unknown to the CRD",
        config(replaced(HTTP_ENABLED, "    http:\n      madeUp: 1\n      enabled: true")),
        in_the_cr(".servers.proxy.http.madeUp"),
    ),
    Case(
        "pattern violation: subaccountId with a slash",
        config(replaced("subaccountId: ", "subaccountId: a/")),
        in_the_cr(".subaccountId"),
    ),
    Case(
        "pattern violation: highAvailabilityMode",
        config(replaced('highAvailabilityMode: "off"', "highAvailabilityMode: sometimes")),
        in_the_cr(".highAvailabilityMode"),
    ),
    Case(
        "pattern violation: audit log mode",
        config(replaced("mode: console", "mode: syslog")),
        in_the_cr(".integration.auditlog.mode"),
    ),
    Case(
        "config near the ConfigMap size limit, with an unknown field",
        config(BASE + "madeUpPadding: " + "x" * (1024 * 1024 - len(BASE) - 4096) + "\n"),
        in_the_cr(".madeUpPadding"),
    ),
    # tenant mode
    Case("unknown tenantMode", tenant_mode("multi"), (*WHERE, "tenantMode")),
    Case("tenantMode in the wrong case", tenant_mode("Shared"), (*WHERE, "tenantMode")),
    Case("tenantMode a boolean", tenant_mode("yes"), (*WHERE, "tenantMode")),
    Case(
        "shared mode with a missing secret",
        shared_mode,
        ("kyma-system/connectivity-service-service-key", "--service-key-secret"),
    ),
    Case(
        "shared mode with --service-key-secret naming a missing secret",
        shared_mode,
        ("kyma-system/my-service-key", "--service-key-secret"),
        args=("--service-key-secret", "my-service-key"),
    ),
    # ports in the info ConfigMap
    *(
        Case(name, info(**{key: value}), (INFO_MAP, key))
        for name, key, value in (
            ("port out of range", HTTP_PORT, "65536"),
            ("port zero", LDAP_PORT, "0"),
            ("non-numeric port", SOCKS5_PORT, "socks"),
            ("negative port", HTTP_PORT, "-20003"),
            ("port with a leading space", HTTP_PORT, " 20003"),
            ("port with a space inside", HTTP_PORT, "200 03"),
            ("port with a trailing newline", HTTP_PORT, "20003\n"),
            ("port as a float", HTTP_PORT, "20003.0"),
            ("port in hex", HTTP_PORT, "0x4e23"),
            ("port with a plus sign", HTTP_PORT, "+20003"),
            ("empty port", LDAP_PORT, ""),
        )
    ),
    Case("missing port key", info_without(SOCKS5_PORT), (INFO_MAP, SOCKS5_PORT)),
    # missing or misplaced objects and keys
    Case(
        "missing key connectivity-proxy-config.yml",
        configmap_with({"connectivity-proxy-config.yaml": BASE}),
        WHERE,
    ),
    Case(
        "binaryData instead of data",
        configmap_with({}, {KEY: base64.b64encode(BASE.encode()).decode()}),
        (*WHERE, "binaryData"),
    ),
    # While the legacy installation runs, the Kyma reconciler installs a missing one again.
    Case(
        "missing config ConfigMap (the reconciler installs it again; a retry may help)",
        install(with_configmap=False),
        (CONFIG_MAP, "missing", "reconciler"),
        exit_code=1,
    ),
    Case(
        "missing info ConfigMap (the reconciler installs it again; a retry may help)",
        install(with_info=False),
        (INFO_MAP, "missing", "reconciler"),
        exit_code=1,
    ),
    Case(
        "missing CR (the module creates it; a retry may help)",
        install(with_cr=False),
        ("kyma-system/connectivity-proxy", "does not exist"),
        exit_code=1,
    ),
    Case(
        "missing ConnectivityProxy CRD (a retry may help)",
        without_crd,
        ("kyma-system/connectivity-proxy", "CRD"),
        exit_code=1,
    ),
    # backup, restore and cleaner
    Case(
        "backup namespace Terminating",
        terminating_backup_namespace,
        (BACKUP_NAMESPACE, "Terminating"),
        step=BACKUP,
        exit_code=1,
    ),
    Case(
        "tampered backup: cp-restore",
        then(tamper_backup("connectivity-proxy"), change_source("connectivity-proxy")),
        (f"{BACKUP_NAMESPACE}/connectivity-proxy", "digest"),
        step=RESTORE,
    ),
    Case(
        "tampered backup: cp-cleaner",
        then(tamper_backup("connectivity-proxy-info")),
        (f"{BACKUP_NAMESPACE}/connectivity-proxy-info", "digest"),
        step=CLEANER,
    ),
    Case(
        "backup without its digest: cp-restore",
        then(drop_digest),
        (f"{BACKUP_NAMESPACE}/connectivity-proxy", "digest"),
        step=RESTORE,
    ),
    Case(
        "legacy config ConfigMap changed after the backup",
        then(change_source("connectivity-proxy")),
        (CONFIG_MAP, "changed after"),
        step=CLEANER,
    ),
    Case(
        "legacy info ConfigMap changed after the backup",
        then(change_source("connectivity-proxy-info")),
        (INFO_MAP, "changed after"),
        step=CLEANER,
    ),
    Case(
        "backups deleted after the CR was marked backed up",
        then(delete_backups),
        (f"{BACKUP_NAMESPACE}/connectivity-proxy", "backup"),
        step=CLEANER,
    ),
    Case(
        "cleaner before the backup",
        migrated_only,
        ("kyma-system/connectivity-proxy", "backed-up"),
        step=CLEANER,
    ),
    Case(
        "restore over a ConfigMap that changed, without --force",
        restore_over_changed,
        (CONFIG_MAP,),
        step=RESTORE,
    ),
]


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
def restore_crd(cluster: Cluster) -> Iterator[None]:
    yield
    if (
        cluster.get("apiextensions.k8s.io", "v1", "customresourcedefinitions", None, chain.CP_CRD)
        is None
    ):
        cluster.apply_file(FIXTURES / "crd-connectivityproxy.yaml")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_is_refused_without_a_single_write(
    cluster: Cluster, restore_crd: None, case: Case
) -> None:
    case.setup(cluster)
    versions = chain.resource_versions(cluster)
    audit = chain.AuditWindow(cluster)

    result = chain.run_in_process(case.step, cluster.kubeconfig, *case.args, env=case.env)

    assert result.exit_code == case.exit_code, result.output
    for name in case.names:
        assert name in result.output, f"the message does not name {name!r}:\n{result.output}"
    # A refusal is read by a person: it must not drown the named problem in echoed input.
    assert len(result.output) < 20_000, result.output[-2000:]
    if audit.available:
        assert chain.but_the_record(audit.mutations()) == []
    assert chain.resource_versions(cluster) == versions


def test_a_yaml_bomb_is_refused_in_under_a_second(cluster: Cluster) -> None:
    started = time.monotonic()
    with pytest.raises(Exception, match="alias"):
        parse_yaml_mapping(billion_laughs(), "bomb")
    assert time.monotonic() - started < 1.0
    # The whole tool, cluster round trips included; generous for a loaded CI machine.
    legacy.install(cluster, config_text=billion_laughs())
    started = time.monotonic()
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 3
    assert time.monotonic() - started < 5.0


def test_crlf_line_endings_migrate_exactly_like_lf(cluster: Cluster) -> None:
    """CRLF is valid YAML and parses to the same data, which is what a user who edited the
    ConfigMap on Windows expects: it is migrated, not refused."""
    legacy.install(cluster, config_text=BASE)
    assert chain.run_in_process(MIGRATOR, cluster.kubeconfig).exit_code == 0
    with_lf = cluster.cr()
    cluster.reset()
    legacy.install(cluster, config_text=BASE.replace("\n", "\r\n"))
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig)
    assert result.exit_code == 0, result.output
    with_crlf = cluster.cr()
    assert with_lf and with_crlf
    assert with_crlf["spec"] == with_lf["spec"]
    assert yaml.safe_load(BASE.replace("\n", "\r\n")) == yaml.safe_load(BASE)


def test_the_audit_log_proof_sees_writes(cluster: Cluster) -> None:
    """The zero-writes proof is only as good as its ability to see a write: a successful run
    shows up in it, dry run excluded."""
    legacy.install(cluster)
    audit = chain.AuditWindow(cluster)
    if not audit.available:
        pytest.skip("no audit log (CP_TEST_KUBECONFIG without CP_TEST_AUDIT_LOG)")
    assert chain.run_in_process(MIGRATOR, cluster.kubeconfig).exit_code == 0
    writes = audit.mutations()
    assert any(
        w.startswith("patch ") and "connectivityproxies/connectivity-proxy" in w for w in writes
    )
    assert not any("dryRun" in w for w in writes)
