"""`make chart-docs`: charts/kubetrader/README.md's values table, from values.yaml's comments.

helm-docs' format (its `# -- description` comments, a Key | Type | Default | Description
table) without helm-docs, which PyPI, Debian and npm do not ship. A key with a `# --`
comment is one row, its default the whole value (so `resources` is one row, not four);
a key without one is a section: its children are rows. The README's text around the table
comes from README.md.gotmpl's `{{ template "chart.valuesTable" . }}`, as with helm-docs.
`python charts/values_docs.py --check` exits 1 when the README is stale (a test runs it).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "kubetrader"
PLACEHOLDER = '{{ template "chart.valuesTable" . }}'
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.-]*):(?:\s|$)")


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if value is None:
        return "string"
    return "object"


def _default(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return f"`{text}`".replace("|", "\\|")


def rows(values_text: str) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for each documented key, in file order."""
    values = yaml.safe_load(values_text)
    out: list[tuple[str, str, str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing maps
    comment: list[str] | None = None  # the `# --` block being read
    documented_at: int | None = None  # inside a documented key: skip its children
    for line in values_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#"):
            if comment is not None:
                comment.append(stripped[1:].strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            comment = None
            continue
        indent = len(match.group("indent"))
        if documented_at is not None and indent > documented_at:
            continue
        documented_at = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = [key for _, key in stack] + [match.group("key")]
        value: Any = values
        for part in path:
            value = value[part]
        if comment is not None:
            out.append((".".join(path), _type(value), _default(value), " ".join(comment)))
            documented_at = indent
        elif not isinstance(value, dict) or not value:
            out.append((".".join(path), _type(value), _default(value), ""))
        stack.append((indent, match.group("key")))
        comment = None
    return out


def table(values_text: str) -> str:
    lines = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    lines += [f"| {key} | {kind} | {default} | {text} |" for key, kind, default, text in rows(values_text)]
    return "\n".join(lines)


def render(chart: Path = CHART) -> str:
    template = (chart / "README.md.gotmpl").read_text()
    if PLACEHOLDER not in template:
        raise SystemExit(f"{chart / 'README.md.gotmpl'}: no {PLACEHOLDER}")
    return template.replace(PLACEHOLDER, table((chart / "values.yaml").read_text()))


def main(argv: list[str]) -> int:
    readme = CHART / "README.md"
    text = render()
    if argv == ["--check"]:
        if not readme.exists() or readme.read_text() != text:
            print(f"{readme} is stale: run `make chart-docs`", file=sys.stderr)
            return 1
        return 0
    readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
