"""Pure units: redaction by key at any depth (plain data, embedded YAML and JSON, Secrets) and
by value (remembered, then scrubbed from diffs and log lines)."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest

from common import diff, logs, redact
from migrator.config_yaml import parse_yaml_mapping

CANARY = "CANARY-nested-9d2e"


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "clientSecret",
        "client_secret",
        "secretData",
        "proxy-credentials",
        "credentials.json",
        "token",
        "auth-token",
        "privateKey",
        "apiKey",
        "tls.key",
        "ca.key",
        "service_key",
        "passphrase",
    ],
)
def test_credential_keys(key: str) -> None:
    assert redact.is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "secretName",
        "serviceCredentialsKey",
        "secretConfig",
        "tokenServiceUrl",
        "allowedClientId",
        "enableProxyAuthorization",
        "tenantMode",
        "subaccountId",
        "tls.crt",
        "ca.crt",
        "connectivity-proxy-config.yml",
    ],
)
def test_names_of_credentials_are_not_credentials(key: str) -> None:
    assert not redact.is_secret_key(key)


def test_nested_keys_in_embedded_yaml_are_masked_and_the_rest_kept() -> None:
    text = (
        "tenantMode: dedicated\n"
        "integration:\n"
        "  connectivityService:\n"
        "    serviceCredentialsKey: service_key\n"
        f"    password: {CANARY}\n"
        "  oauth:\n"
        f"    clientSecret: '{CANARY}-2'\n"
        "    list:\n"
        f"      - {{token: {CANARY}-3}}\n"
        "  deep:\n"
        "    credentials:\n"
        f"      user: {CANARY}-4\n"
        f"      pass: {CANARY}-5\n"
    )
    configmap = {"data": {"connectivity-proxy-config.yml": text, "proxy-credentials": CANARY}}
    rendered = diff.to_yaml(configmap)
    assert CANARY not in rendered, rendered
    assert "serviceCredentialsKey: service_key" in rendered
    assert "tenantMode: dedicated" in rendered
    assert rendered.count(redact.MASK) >= 5


def test_a_secret_object_has_every_data_value_masked_but_its_keys_shown() -> None:
    secret = {
        "kind": "Secret",
        "data": {"service_key": base64.b64encode(CANARY.encode()).decode()},
        "stringData": {"anything": CANARY},
    }
    rendered = diff.to_yaml(secret)
    assert CANARY not in rendered and "service_key" in rendered and "anything" in rendered


def test_json_service_key_text_is_masked() -> None:
    text = json.dumps({"clientid": "sb-x", "clientsecret": CANARY, "url": "https://x"})
    assert CANARY not in redact.embedded(text)
    assert "sb-x" in redact.embedded(text)


def test_invalid_yaml_is_masked_line_by_line() -> None:
    text = f"a: [unclosed\npassword: {CANARY}\n  token = {CANARY}x\n"
    masked = redact.embedded(text)
    assert CANARY not in masked
    assert "a: [unclosed" in masked


def test_a_remembered_value_is_masked_wherever_it_turns_up() -> None:
    # The migrator remembers what it parsed (the parser itself has no side effects).
    redact.remember_credentials(
        parse_yaml_mapping(f"a:\n  b:\n    clientSecret: {CANARY}\n", "test")
    )
    # e.g. an apiserver message quoting the value under another field, and its base64 form
    message = f'spec.x: Invalid value: "{CANARY}" ({base64.b64encode(CANARY.encode()).decode()})'
    assert CANARY not in redact.scrub(message)
    assert "Invalid value" in redact.scrub(message)
    assert CANARY not in diff.unified({"x": message}, {"x": "y"}, "a", "b")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_are_scrubbed_in_message_fields_and_tracebacks(log_format: str) -> None:
    redact.remember(CANARY)
    stream = io.StringIO()
    logs.setup(log_format, 1, stream)
    log = logging.getLogger("test")
    log.info("value %s", CANARY, extra=logs.fields(value=CANARY, quoted=f'"{CANARY}"'))
    try:
        raise ValueError(CANARY)
    except ValueError:
        log.exception("failed")
    logging.getLogger().handlers[:] = []
    assert CANARY not in stream.getvalue()
    assert stream.getvalue().count(redact.MASK) >= 3


def test_short_values_are_masked_by_key_but_not_remembered() -> None:
    rendered = diff.to_yaml({"password": "abc", "other": "abc"})
    assert "password: <redacted>" in rendered
    assert "other: abc" in rendered
