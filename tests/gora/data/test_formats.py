"""The torch-free JSONL checks shared by the service (uploads) and the trainer."""

from __future__ import annotations

import json
import sys

import pytest

from gora.data.formats import DataFormatError, read_jsonl_lines, validate_lines, validate_row

CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        (CHAT, "chat"),
        ({"prompt": "2+2=", "completion": "4"}, "prompt_completion"),
        ({"prompt": "", "completion": "4"}, "prompt_completion"),
        ({"text": "plain"}, "text"),
        ({"text": "goal!", "label": "sport"}, "classification"),
        ({"text": "goal!", "label": 3}, "classification"),
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
