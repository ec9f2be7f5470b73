"""Security: no secret value ever reaches a tool's output, and YAML is only ever parsed safely.

Canary values sit in the service-key Secret, in the legacy Secrets the cleaner deletes, in
a secret-looking field of the user configuration, in credential-looking keys nested at any
depth of YAML embedded in the legacy ConfigMap, and in a data key such as `proxy-credentials`.
Every tool runs in dry-run and for real (cp-restore also over a changed ConfigMap, where it
shows a diff), with text and JSON logs at debug verbosity; none of the canaries (nor their
base64 form) may appear on stdout or stderr.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from common import kyma
from common.cluster.client import resource_path
from hack.devenv import legacy
from hack.devenv.cluster import REPO, Cluster
from tests.support import chain
from tests.support.chain import MIGRATOR, RESTORE, STATUS, Step

SECRET_CANARY = "CANARY-service-key-7f3e9b1d"
TLS_CANARY = "CANARY-tls-key-2c8a4e6f"
CONFIG_CANARY = "CANARY-config-secret-5d1b7a3c"
NESTED_CANARY = "CANARY-nested-password-8e4f2a6d"
DATA_KEY_CANARY = "CANARY-data-key-3b7c9e1f"
CANARIES = (SECRET_CANARY, TLS_CANARY, CONFIG_CANARY, NESTED_CANARY, DATA_KEY_CANARY)
# More YAML in the legacy ConfigMap (a user's or another tool's), credentials nested deep.
EXTRA_CONFIG = f"""\
auth:
  oauth:
    clientSecret: {NESTED_CANARY}-1
    clients:
      - name: first
        password: "{NESTED_CANARY}-2"
      - {{name: second, token: {NESTED_CANARY}-3}}
  upstream:
    credentials:
      user: {NESTED_CANARY}-4
      privateKey: |
        {NESTED_CANARY}-5
"""


def forbidden(text: str) -> list[str]:
    found = []
    for canary in CANARIES:
        for form in (canary, base64.b64encode(canary.encode()).decode()):
            if form in text:
                found.append(form)
    return found


def install_with_canaries(cluster: Cluster) -> None:
    legacy.fresh_install(cluster)
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "tenantMode: dedicated", "tenantMode: shared"
    )
    configmap = legacy.legacy_configmap(text)
    configmap["data"]["extra-config.yml"] = EXTRA_CONFIG
    configmap["data"]["proxy-credentials"] = DATA_KEY_CANARY
    legacy.install(cluster, configmap=configmap)
    cluster.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "connectivity-service-service-key",
                    "namespace": "kyma-system",
                },
                "stringData": {"service_key": SECRET_CANARY, "password": SECRET_CANARY},
            }
        ]
    )
    # The legacy TLS secrets the cleaner deletes carry a canary too.
    for namespace, name in (
        ("kyma-system", "connectivity-sm-operator-secrets-tls"),
        ("istio-system", "cc-certs"),
    ):
        cluster.kube.merge_patch(
            resource_path("", "v1", "secrets", namespace, name),
            {"stringData": {"tls.key": TLS_CANARY}},
            retry_safe=True,
        )


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_secret_value_in_any_output(cluster: Cluster, log_format: str) -> None:
    install_with_canaries(cluster)
    outputs: list[tuple[str, str]] = []

    def run(step: Step, *args: str) -> int:
        result = chain.run_in_process(
            step, cluster.kubeconfig, "--log-format", log_format, "-v", *args
        )
        outputs.append((f"{step.name} {' '.join(args)}", result.output))
        return result.exit_code

    for step in chain.CHAIN:
        assert run(step, "--dry-run") == 0
        assert run(step) == 0
        assert run(step) == 0  # a rerun: nothing to do
    assert run(STATUS) == 0
    assert run(STATUS, "-o", "json") == 0
    # Restore needs a missing source to do anything: the chain's cleaner removed both.
    assert run(RESTORE, "--dry-run") == 0
    assert run(RESTORE) == 0
    # A restored ConfigMap changed since: cp-restore shows the difference (and refuses).
    path = resource_path("", "v1", "configmaps", "kyma-system", "connectivity-proxy")
    changed = EXTRA_CONFIG.replace("name: first", "name: changed").replace(
        NESTED_CANARY, NESTED_CANARY + "-new"
    )
    cluster.kube.merge_patch(
        path,
        {"data": {"extra-config.yml": changed, "proxy-credentials": DATA_KEY_CANARY + "-new"}},
        retry_safe=True,
    )
    assert run(RESTORE, "--dry-run") == 3
    assert "name: changed" in outputs[-1][1], "the diff must still show what changed"
    assert run(RESTORE) == 3
    assert run(RESTORE, "--force", "--dry-run") == 0
    assert run(RESTORE, "--force") == 0
    for name, output in outputs:
        assert output, f"{name} printed nothing; the test would prove nothing"
        assert not forbidden(output), f"{name} printed a secret value:\n{output}"


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real"])
def test_a_secret_looking_config_value_never_reaches_the_output(
    cluster: Cluster, log_format: str, dry_run: bool
) -> None:
    """A configuration with a credential-looking field is refused (the field is not in the
    CRD); the refusal names the field, never its value."""
    text = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY].replace(
        "serviceCredentialsKey: service_key",
        f"serviceCredentialsKey: service_key\n    secretData: {CONFIG_CANARY}\n"
        f"    password: {CONFIG_CANARY}",
    )
    legacy.install(cluster, config_text=text)
    args = ["--log-format", log_format, "-v"] + (["--dry-run"] if dry_run else [])
    result = chain.run_in_process(MIGRATOR, cluster.kubeconfig, *args)
    assert result.exit_code == 3, result.output
    assert "spec.config.integration.connectivityService.secretData" in result.output
    assert not forbidden(result.output), result.output


NESTED_PLACES = {
    # a field the CRD has, holding a value that breaks its pattern: the apiserver's message
    # quotes the value
    "secretData breaking its pattern": (
        "serviceCredentialsKey: service_key",
        f"serviceCredentialsKey: service_key\n    secretData: '{CONFIG_CANARY}!'",
    ),
    "password deep under servers.proxy.authorization": (
        "      oauth:\n",
        f"      oauth:\n        clientSecret: {CONFIG_CANARY}\n"
        f"        nested:\n          password: {CONFIG_CANARY}\n",
    ),
    "token in a list": (
        "tenantMode: dedicated",
        f"tenantMode: dedicated\nextra:\n  - {{token: {CONFIG_CANARY}}}",
    ),
}


@pytest.mark.parametrize("place", sorted(NESTED_PLACES))
def test_a_nested_credential_never_reaches_any_output_of_a_refusal(
    cluster: Cluster, place: str
) -> None:
    old, new = NESTED_PLACES[place]
    base = legacy.legacy_configmap()["data"][kyma.CONFIG_KEY]
    assert old in base
    legacy.install(cluster, config_text=base.replace(old, new, 1))
    for args in (["--dry-run"], []):
        for log_format in ("text", "json"):
            result = chain.run_in_process(
                MIGRATOR, cluster.kubeconfig, "--log-format", log_format, "-v", *args
            )
            assert result.exit_code == 3, result.output
            assert "spec.config." in result.output
            assert not forbidden(result.output), result.output


UNSAFE_YAML = re.compile(
    r"yaml\.(load|load_all|full_load|full_load_all|unsafe_load|unsafe_load_all)\(|"
    r"yaml\.(Loader|FullLoader|UnsafeLoader|CLoader|CFullLoader|CUnsafeLoader)\b|"
    r"\b(FullLoader|UnsafeLoader)\b"
)


def test_yaml_is_only_parsed_with_the_safe_loader() -> None:
    sources = [
        path
        for folder in ("common", "migrator", "backup", "cleaner", "hack", "tests")
        for path in sorted((REPO / folder).rglob("*.py"))
        if path != Path(__file__)
    ]
    assert len(sources) > 20
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if UNSAFE_YAML.search(line)
    ]
    assert not offenders, "\n".join(offenders)
    uses = [p for p in sources if "yaml." in p.read_text()]
    assert uses, "no YAML parsing found: the pattern would prove nothing"


def test_the_safe_loader_refuses_python_tags(tmp_path: Path) -> None:
    from common.errors import RefusedError
    from migrator.config_yaml import parse_yaml_mapping

    marker = tmp_path / "pwned"
    with pytest.raises(RefusedError):
        parse_yaml_mapping(f'x: !!python/object/apply:os.system ["touch {marker}"]\n', "test")
    assert not marker.exists()
