"""Pure units: strict, bounded YAML parsing and the ConfigMap digest."""

from __future__ import annotations

import time

import pytest

from common.backups import content_digest
from common.errors import RefusedError
from migrator.config_yaml import parse_yaml_mapping

WHERE = "ConfigMap kyma-system/connectivity-proxy key connectivity-proxy-config.yml"


def refusal(text: str) -> str:
    with pytest.raises(RefusedError) as caught:
        parse_yaml_mapping(text, WHERE)
    message = str(caught.value)
    assert WHERE in message
    return message


def test_a_plain_mapping_parses() -> None:
    assert parse_yaml_mapping("a:\n  b: 1\nc: [x, y]\n", WHERE) == {"a": {"b": 1}, "c": ["x", "y"]}


def test_crlf_line_endings_parse_like_lf() -> None:
    assert parse_yaml_mapping("a:\r\n  b: 1\r\n", WHERE) == {"a": {"b": 1}}


def test_invalid_yaml_names_the_line() -> None:
    assert "line 2" in refusal("a: 1\nb: [unclosed\n")


def test_tabs_are_explained() -> None:
    assert "tabs" in refusal("a:\n\tb: 1\n")


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    message = refusal("a: 1\nb: 2\na: 3\n")
    assert "duplicate key 'a' at line 3" in message
    assert "line 1" in message


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- a\n- b\n", "a list"), ("just text\n", "str scalar"), ("42\n", "int scalar")],
)
def test_a_document_that_is_no_mapping_is_refused(text: str, kind: str) -> None:
    assert kind in refusal(text)


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n"])
def test_an_empty_document_is_refused(text: str) -> None:
    assert "empty" in refusal(text)


def test_several_documents_are_refused() -> None:
    assert "single document" in refusal("a: 1\n---\nb: 2\n")


def test_a_yaml_bomb_is_refused_within_a_second() -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for level in "bcdefghij":
        previous = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join(['*' + previous] * 9)}]\n"
    started = time.monotonic()
    assert "alias" in refusal(bomb)
    assert time.monotonic() - started < 1.0


def test_a_reasonable_alias_is_fine() -> None:
    assert parse_yaml_mapping("base: &b {x: 1}\nother: *b\n", WHERE) == {
        "base": {"x": 1},
        "other": {"x": 1},
    }


def test_null_values_are_refused_with_their_path() -> None:
    assert ".servers.proxy" in refusal("servers:\n  proxy:\n")


def test_non_string_keys_are_refused() -> None:
    assert "key 80" in refusal("ports:\n  80: http\n")


def test_dates_are_refused_rather_than_turned_into_objects() -> None:
    assert ".since" in refusal("since: 2024-01-01\n")


def test_oversized_documents_are_refused() -> None:
    assert "bytes" in refusal("a: " + "x" * (1024 * 1024 + 1) + "\n")


def test_digest_is_canonical_and_content_only() -> None:
    one = {"data": {"b": "2", "a": "1"}, "metadata": {"name": "x"}}
    two = {"data": {"a": "1", "b": "2"}, "binaryData": {}, "metadata": {"name": "y"}}
    assert content_digest(one) == content_digest(two)
    assert content_digest(one) != content_digest({"data": {"a": "1"}})
    assert content_digest(one).startswith("sha256:")


# -- YAML 1.1 readings the text does not suggest (issue 14, item 8) ----------------------------


@pytest.mark.parametrize(
    ("text", "path", "value", "what"),
    [
        ("port: 1:20\n", ".port", 80, "sexagesimal"),
        ("time: 1:20.5\n", ".time", 80.5, "sexagesimal"),
        ("mode: 0755\n", ".mode", 493, "octal"),
        ("mask: 0b11\n", ".mask", 3, "binary"),
        ("ha: off\n", ".ha", False, "'off'"),
        ("list: [a, yes]\n", ".list[1]", True, "'yes'"),
        ("a:\n  b:\n    c: On\n", ".a.b.c", True, "'On'"),
        ("<<: {merged: no}\n", ".merged", False, "'no'"),
    ],
)
def test_yaml11_surprises_are_found_with_field_source_text_and_value(
    text: str, path: str, value: object, what: str
) -> None:
    from migrator.config_yaml import parse_yaml_document, yaml11_warnings

    parsed = parse_yaml_document(text, WHERE)
    [surprise] = parsed.surprises
    assert (surprise.path, surprise.value) == (path, value)
    assert surprise.text in text
    assert what in (surprise.surprise or "")
    [warning] = yaml11_warnings(parsed)
    assert warning.path == path
    assert warning.message.startswith(f"{WHERE}: {path} (line ")
    assert "the value taken is" in warning.message


@pytest.mark.parametrize(
    "text",
    [
        "a: 80\n",
        "a: true\n",
        "a: false\n",
        "a: 0\n",
        "a: 0x1F\n",
        "a: 1.5\n",
        "a: '1:20'\n",
        "a: x\n",
    ],
)
def test_what_reads_as_written_gives_no_warning(text: str) -> None:
    from migrator.config_yaml import parse_yaml_document, yaml11_warnings

    assert yaml11_warnings(parse_yaml_document(text, WHERE)) == []


def test_a_field_taken_as_its_source_text_gives_no_warning() -> None:
    from migrator.config_yaml import parse_yaml_document, yaml11_warnings

    assert parse_yaml_document("ha: off\nport: 8\n", WHERE).scalars[".ha"].text == "off"
    # The field was taken as its text (migrator.plan, where the CRD wants a string): no
    # surprise, so no warning (the migrator logs that it kept the text).
    assert yaml11_warnings(parse_yaml_document("ha: off\n", WHERE), taken={"ha": "off"}) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a: b\tc\n", "b\tc"),  # inside a plain value
        ("a:\tb\n", "b"),  # separation after the colon
        ("a: b\t# comment\n", "b"),  # before a comment
        ("a: b\t\n", "b"),  # trailing
        ("a: [b,\tc]\n", ["b", "c"]),  # in a flow sequence
        ('a: "b\tc"\n', "b\tc"),  # quoted (PyYAML always took these)
    ],
)
def test_tabs_inside_a_line_are_white_space_as_yaml_allows(text: str, value: object) -> None:
    assert parse_yaml_mapping(text, "test") == {"a": value}


def test_every_line_with_a_tab_in_its_indentation_is_named() -> None:
    message = refusal("a:\n  b: 1\n\tc: 2\n  d: 3\n\te: 4\n")
    assert "YAML forbids tabs for indentation; use spaces: line(s) 3, 5" in message
