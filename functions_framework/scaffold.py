"""``funcd new``: a runnable function with its context and a test."""

from __future__ import annotations

from pathlib import Path

from .errors import ScaffoldError

MAIN = '''"""{name}: an HTTP function."""


def handler(context, event):
    """Greet whoever is named in the JSON body, or the world."""
    body = event.data if isinstance(event.data, dict) else {{}}
    who = body.get("name", "world")
    context.logger.info("greeting %s", who)
    return {{"message": f"Hello, {{who}}!"}}
'''

FUNCTION_YAML = """# The function's context (OpenFunction v1beta2 layout).
name: {name}
version: v1
triggers:
  http:
    port: 8080
"""

TEST = """from pathlib import Path

from functions_framework import testing

FUNCTION = Path(__file__).parent


def test_greets_by_name():
    result = testing.call(FUNCTION, data={{"name": "Ada"}})
    assert result.status == 200
    assert result.json == {{"message": "Hello, Ada!"}}


def test_greets_the_world_by_default():
    result = testing.call(FUNCTION)
    assert result.json == {{"message": "Hello, world!"}}
"""

README = """# {name}

Run it: `funcd run .`, then
`curl -s localhost:8080 -H 'content-type: application/json' -d '{{"name": "Ada"}}'`.

Test it: `python -m pytest`.
"""


def scaffold(folder: Path, template: str = "http") -> list[Path]:
    if template != "http":
        raise ScaffoldError(f"--template: expected 'http', got {template!r}")
    if folder.exists() and any(folder.iterdir()):
        raise ScaffoldError(f"{folder}: expected a new or empty folder, found files there")
    name = folder.name
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ScaffoldError(f"name: expected letters, digits, '-' or '_', got {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "main.py": MAIN,
        "function.yaml": FUNCTION_YAML,
        f"test_{name.replace('-', '_')}.py": TEST,
        "README.md": README,
    }
    out = []
    for filename, text in files.items():
        path = folder / filename
        path.write_text(text.format(name=name))
        out.append(path)
    return out
