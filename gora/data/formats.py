"""The JSONL formats a user brings, checked row by row.

This module imports nothing heavy (no torch, no transformers) so that the service can validate an upload
with exactly the rules the trainer applies later. Every error names the line (1-based) and the field.

Formats, told apart by their keys:
- ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": str, "weight"?: 0|1}, ...]}``;
  the loss covers assistant turns only (those with ``weight`` 0 are skipped, as in OpenAI's format).
- ``prompt_completion``: ``{"prompt": str, "completion": str}``; the loss covers the completion.
- ``text``: ``{"text": str}``; the loss covers every token.
- ``classification``: ``{"text": str, "label": str | int}``; for sequence classification.
- ``preference``: OpenAI's preference rows, ``{"input": {"messages": [...]}, "preferred_output":
  [{"role": "assistant", "content": str}], "non_preferred_output": [...]}``; for preference tuning
  (DPO): the conversation so far, then the answer to prefer and the one not to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FORMATS = ("chat", "prompt_completion", "text", "classification", "preference")
PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")
ROLES = ("system", "user", "assistant")


class DataFormatError(ValueError):
    """A row that cannot be used, with the line and field to fix."""

    def __init__(self, line: int, field: str | None, message: str):
        self.line = line
        self.field = field
        self.message = message
        where = f"line {line}" + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {message}")

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


def detect_format(row: dict[str, Any]) -> str | None:
    """The format a row's keys select, or None when they select none."""
    if any(key in row for key in PREFERENCE_KEYS):
        return "preference"
    if "messages" in row:
        return "chat"
    if "prompt" in row or "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "classification" if "label" in row else "text"
    return None


def _require_text(row: dict[str, Any], key: str, line: int, *, allow_empty: bool = False) -> None:
    value = row.get(key)
    if not isinstance(value, str):
        raise DataFormatError(line, key, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataFormatError(line, key, "must not be empty")


def _check_messages(messages: Any, line: int, field: str) -> list[dict[str, Any]]:
    """A non-empty list of well-formed ``{role, content, weight?}`` messages, else the error."""
    if not isinstance(messages, list) or not messages:
        raise DataFormatError(line, field, "must be a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        where = f"{field}[{i}]"
        if not isinstance(message, dict):
            raise DataFormatError(line, where, "must be an object with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise DataFormatError(
                line, f"{where}.role", f"must be one of {', '.join(ROLES)}; got {role!r}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise DataFormatError(line, f"{where}.content", "must be a string")
        if message.get("weight", 1) not in (0, 1):
            raise DataFormatError(line, f"{where}.weight", "must be 0 or 1")
    return messages


def _check_chat(row: dict[str, Any], line: int) -> None:
    messages = _check_messages(row["messages"], line, "messages")
    trained_turns = sum(
        m["role"] == "assistant" and m.get("weight", 1) == 1 and bool(m["content"].strip())
        for m in messages
    )
    if trained_turns == 0:
        raise DataFormatError(
            line, "messages", "needs at least one non-empty assistant message to learn from"
        )


def _check_preference(row: dict[str, Any], line: int) -> None:
    # OpenAI's rules: the input is a conversation; each output is exactly one assistant message.
    missing = [key for key in PREFERENCE_KEYS if key not in row]
    if missing:
        raise DataFormatError(
            line,
            missing[0],
            "is missing: a preference row needs input, preferred_output and non_preferred_output",
        )
    prompt = row["input"]
    if not isinstance(prompt, dict) or "messages" not in prompt:
        raise DataFormatError(line, "input", 'must be an object {"messages": [...]}')
    _check_messages(prompt["messages"], line, "input.messages")
    for key in PREFERENCE_KEYS[1:]:
        output = _check_messages(row[key], line, key)
        if len(output) != 1 or output[0]["role"] != "assistant":
            raise DataFormatError(line, key, "must be a list of exactly one assistant message")
        if not output[0]["content"].strip():
            raise DataFormatError(line, f"{key}[0].content", "must not be empty")
    if row["preferred_output"][0]["content"] == row["non_preferred_output"][0]["content"]:
        raise DataFormatError(
            line,
            "non_preferred_output",
            "is the same answer as preferred_output: nothing to prefer",
        )


def _check_classification(row: dict[str, Any], line: int) -> None:
    _require_text(row, "text", line)
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise DataFormatError(line, "label", "must be a string or an integer")
    if isinstance(label, str) and not label.strip():
        raise DataFormatError(line, "label", "must not be empty")


def validate_row(row: Any, line: int) -> str:
    """Checks one parsed row and returns its format; raises DataFormatError naming the field."""
    if not isinstance(row, dict):
        raise DataFormatError(line, None, "each line must be a JSON object")
    kind = detect_format(row)
    if kind is None:
        raise DataFormatError(
            line,
            None,
            "unknown format: give 'messages' (chat), 'prompt' and 'completion', 'text', "
            "'text' and 'label' (classification), or 'input', 'preferred_output' and "
            "'non_preferred_output' (preference)",
        )
    if kind == "chat":
        _check_chat(row, line)
    elif kind == "prompt_completion":
        _require_text(row, "prompt", line, allow_empty=True)
        _require_text(row, "completion", line)
    elif kind == "text":
        _require_text(row, "text", line)
    elif kind == "preference":
        _check_preference(row, line)
    else:
        _check_classification(row, line)
    return kind


def method_format_error(fmt: str | None, method: str) -> str | None:
    """Why rows of ``fmt`` cannot train with ``method`` ("supervised" or "dpo"), or None if they can."""
    if method == "dpo" and fmt != "preference":
        return (
            f"method 'dpo' trains on preference rows ({{'input', 'preferred_output', "
            f"'non_preferred_output'}}), and this file holds {fmt} rows"
        )
    if method != "dpo" and fmt == "preference":
        return "preference rows train with method 'dpo'; set method.type to 'dpo'"
    return None


def parse_line(raw: str | bytes, line: int) -> Any:
    """One JSONL line parsed, or DataFormatError with the line number.

    ``json.loads`` fails in more ways than ``JSONDecodeError``: bytes that are not UTF-8, an
    integer past Python's 4,300-digit limit (``ValueError``), nesting deeper than the parser's
    recursion allows (``RecursionError``). Each is a bad line, never a crash of the upload.
    """
    try:
        return json.loads(raw)
    except RecursionError:
        raise DataFormatError(line, None, "not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors too
        raise DataFormatError(line, None, f"not valid JSON ({exc})") from None


@dataclass
class FileReport:
    """What validating a whole file found: its format, its usable rows and its first errors."""

    format: str | None = None
    rows: int = 0
    errors: list[DataFormatError] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # classification labels, sorted, as strings

    @property
    def ok(self) -> bool:
        return not self.errors and self.rows > 0


def validate_lines(lines: Iterable[str | bytes], max_errors: int = 10) -> FileReport:
    """Validates JSONL lines; keeps the first ``max_errors`` errors. Blank lines are skipped.

    Every row must share the first row's format: a file that mixes them is an error at the first
    row that differs, since the trainer builds one kind of example per job.
    """
    report = FileReport()
    labels: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            row = parse_line(raw, number)
            kind = validate_row(row, number)
            if report.format is None:
                report.format = kind
            elif kind != report.format:
                raise DataFormatError(
                    number, None, f"is {kind} but the file's first row is {report.format}"
                )
        except DataFormatError as exc:
            if len(report.errors) < max_errors:
                report.errors.append(exc)
            continue
        report.rows += 1
        if kind == "classification":
            labels.add(str(row["label"]))
    if report.rows == 0 and not report.errors:
        report.errors.append(DataFormatError(1, None, "the file has no rows"))
    report.labels = sorted(labels)
    return report


def read_jsonl_lines(path: str) -> tuple[str, list[dict[str, Any]], list[int]]:
    """Reads a JSONL file for training: (format, rows, each row's 1-based line number).

    The first bad row raises DataFormatError. Line numbers matter when the file has blank lines:
    errors found later (while encoding) must still point at the right line.
    """
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    kind: str | None = None
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            row = parse_line(raw, number)
            row_kind = validate_row(row, number)
            if kind is None:
                kind = row_kind
            elif row_kind != kind:
                raise DataFormatError(
                    number, None, f"is {row_kind} but the file's first row is {kind}"
                )
            rows.append(row)
            numbers.append(number)
    if kind is None:
        raise DataFormatError(1, None, "the file has no rows")
    return kind, rows, numbers


def read_jsonl(path: str) -> tuple[str, list[dict[str, Any]]]:
    """Reads a JSONL file for training: (format, rows); the first bad row raises DataFormatError."""
    kind, rows, _ = read_jsonl_lines(path)
    return kind, rows
