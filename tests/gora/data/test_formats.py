"""The torch-free JSONL checks shared by the service (uploads) and the trainer."""

from __future__ import annotations

import json
import sys

import pytest

from gora.data.formats import DataFormatError, read_jsonl_lines, validate_lines, validate_row

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
PAIR = {
    "input": {"messages": [{"role": "user", "content": "2+2?"}]},
    "preferred_output": [{"role": "assistant", "content": "4"}],
    "non_preferred_output": [{"role": "assistant", "content": "5"}],
}


def _pair(**changes):
    return {**PAIR, **changes}


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        (CHAT, "chat"),
        ({"prompt": "2+2=", "completion": "4"}, "prompt_completion"),
        ({"prompt": "", "completion": "4"}, "prompt_completion"),
        ({"text": "plain"}, "text"),
        ({"text": "goal!", "label": "sport"}, "classification"),
        ({"text": "goal!", "label": 3}, "classification"),
        (PAIR, "preference"),
    ],
)
def test_valid_rows_and_their_format(row, kind):
    assert validate_row(row, 1) == kind


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ([1, 2], None, "JSON object"),
        ({"question": "?"}, None, "unknown format"),
        ({"messages": []}, "messages", "non-empty list"),
        ({"messages": ["hi"]}, "messages[0]", "object"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "one of system"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "string"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages", "assistant"),
        (
            {"messages": [{"role": "assistant", "content": "x", "weight": 0}]},
            "messages",
            "assistant",
        ),
        (
            {"messages": [{"role": "assistant", "content": "x", "weight": 2}]},
            "messages[0].weight",
            "0 or 1",
        ),
        ({"prompt": "p"}, "completion", "string"),
        ({"prompt": "p", "completion": "  "}, "completion", "empty"),
        ({"text": ""}, "text", "empty"),
        ({"text": "x", "label": True}, "label", "string or an integer"),
        ({"text": "x", "label": ""}, "label", "empty"),
    ],
)
def test_bad_rows_name_line_and_field(row, field, message):
    with pytest.raises(DataFormatError, match=message) as caught:
        validate_row(row, 7)
    assert (caught.value.line, caught.value.field) == (7, field)
    assert str(caught.value).startswith("line 7")


def test_validate_lines_reports_first_errors_and_labels():
    lines = [
        json.dumps({"text": "a", "label": "x"}),
        "",
        "{not json",
        json.dumps({"text": "b", "label": 2}),
        json.dumps({"text": "c"}),  # text, not classification: mixed formats
        json.dumps({"text": "d", "label": "x"}),
    ]
    report = validate_lines(lines, max_errors=10)
    assert report.format == "classification"
    assert report.rows == 3
    assert [(e.line, e.field) for e in report.errors] == [(3, None), (5, None)]
    assert "first row is classification" in report.errors[1].message
    assert report.labels == ["2", "x"]
    assert not report.ok


def test_validate_lines_caps_errors_and_flags_empty_files():
    report = validate_lines(["[]"] * 50, max_errors=3)
    assert len(report.errors) == 3 and report.rows == 0
    empty = validate_lines(["", "  "])
    assert [e.message for e in empty.errors] == ["the file has no rows"]
    assert validate_lines([json.dumps(CHAT).encode()]).ok  # bytes, as uploads arrive


def test_lines_json_itself_refuses_are_bad_lines_not_crashes():
    hostile = [
        b'{"text": "a", "label": ' + b"9" * 5000 + b"}",  # past Python's int digit limit
        b"[" * 100_000 + b"]" * 100_000,  # deeper than the parser's recursion
        b'{"text": "caf\xe9", "label": "x"}',  # not UTF-8
        json.dumps({"text": "fine", "label": "x"}).encode(),
    ]
    report = validate_lines(hostile)
    assert report.rows == 1 and report.format == "classification"
    assert [e.line for e in report.errors] == [1, 2, 3]
    assert "4300" in report.errors[0].message or "digits" in report.errors[0].message
    assert "nested too deeply" in report.errors[1].message


def test_read_jsonl_lines_keeps_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("\n" + json.dumps(CHAT) + "\n\n" + json.dumps(CHAT) + "\n")
    kind, rows, lines = read_jsonl_lines(str(path))
    assert (kind, len(rows), lines) == ("chat", 2, [2, 4])
    path.write_text(json.dumps(CHAT) + "\n\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(DataFormatError, match="line 3: is text but the file's first row is chat"):
        read_jsonl_lines(str(path))


def test_formats_module_imports_no_torch():
    import subprocess

    code = "import gora.data.formats, gora.config, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"input": PAIR["input"]}, "preferred_output", "is missing"),
        (_pair(input=[{"role": "user", "content": "x"}]), "input", '{"messages"'),
        (_pair(input={"messages": []}), "input.messages", "non-empty list"),
        (
            _pair(input={"messages": [{"role": "robot", "content": "x"}]}),
            "input.messages[0].role",
            "one of system",
        ),
        (_pair(preferred_output=[]), "preferred_output", "non-empty list"),
        (
            _pair(preferred_output=[{"role": "user", "content": "4"}]),
            "preferred_output",
            "exactly one assistant message",
        ),
        (
            _pair(non_preferred_output=PAIR["non_preferred_output"] * 2),
            "non_preferred_output",
            "exactly one assistant message",
        ),
        (
            _pair(preferred_output=[{"role": "assistant", "content": " "}]),
            "preferred_output[0].content",
            "must not be empty",
        ),
        (
            _pair(non_preferred_output=PAIR["preferred_output"]),
            "non_preferred_output",
            "nothing to prefer",
        ),
    ],
)
def test_bad_preference_rows_name_the_field(row, field, message):
    with pytest.raises(DataFormatError) as caught:
        validate_row(row, 4)
    assert (caught.value.line, caught.value.field) == (4, field)
    assert message in caught.value.message


def test_a_preference_file_is_shown_as_preference_and_methods_check_it():
    from gora.data.formats import method_format_error

    report = validate_lines([json.dumps(PAIR), json.dumps(PAIR)])
    assert report.ok and report.format == "preference" and report.rows == 2
    assert method_format_error("preference", "dpo") is None
    assert method_format_error("chat", "supervised") is None
    assert "preference rows" in method_format_error("chat", "dpo")
    assert "'dpo'" in method_format_error("preference", "supervised")
