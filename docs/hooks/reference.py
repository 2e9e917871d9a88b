"""MkDocs hook: the reference pages that are generated from the code at every build.

The CLI reference comes from the Typer app, the HTTP reference from the API's OpenAPI schema
and the settings table from :class:`trademl.config.Settings`, so none of them can fall behind
the code they describe.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

METHODS = ("get", "post", "put", "patch", "delete")


def cell(text: object) -> str:
    """One markdown table cell: pipes escaped, angle brackets kept literal, one line."""
    value = " ".join(str(text).split())
    return value.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _type_name(param: Any) -> str:
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:
        return ""
    name = getattr(annotation, "__name__", None) or str(annotation)
    return name.replace("typing.", "").replace("pathlib.", "")


def _param_row(param: Any) -> str:
    names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
    if type(param).__name__.endswith("Argument"):
        names = f"`{param.name.upper()}`"
    kind = _type_name(param)
    if getattr(param, "is_flag", False):
        kind = "flag"
    default = param.default
    if param.required:
        shown = "required"
    elif default is None or default == () or callable(default):
        shown = ""
    else:
        shown = f"`{default}`"
    return f"| {names} | {cell(kind)} | {shown} | {cell(getattr(param, 'help', '') or '')} |"


def _commands(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        if not sub.hidden:
            yield from _commands(sub, [*path, name])


def _usage(path: list[str], command: Any) -> str:
    words = [*path, "[OPTIONS]"]
    for param in command.params:
        if type(param).__name__.endswith("Argument"):
            name = param.name.upper()
            words.append(name if param.required else f"[{name}]")
    if getattr(command, "commands", None):
        words.append("COMMAND [ARGS]...")
    return " ".join(words)


def cli_reference() -> str:
    """Markdown for every command of ``trademl``: usage, help and options."""
    import typer

    from trademl.cli.app import app

    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the Typer app (`trademl.cli.app`) when the site is built. Every command",
        "also prints this with `--help`. Global options go before the command:",
        "`trademl --home DIR --log-level DEBUG data list`.",
        "",
    ]
    for path, command in _commands(root, ["trademl"]):
        lines += [f"{'#' * min(len(path) + 1, 4)} {' '.join(path)}", ""]
        help_text = inspect.cleandoc(command.help or "")
        if help_text:
            lines += [help_text, ""]
        lines += ["```text", _usage(path, command), "```", ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            lines += ["| parameter | type | default | meaning |", "|---|---|---|---|"]
            lines += [_param_row(param) for param in params]
            lines.append("")
    return "\n".join(lines)


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[`{name}`](#{name.lower()})"
    if "anyOf" in schema:
        return " or ".join(_schema_name(option) for option in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    return f"`{schema.get('type', 'object')}`"


def _operation(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### {method.upper()} {path}", ""]
    description = operation.get("description") or operation.get("summary", "")
    lines += [description.replace("``", "`"), ""]
    params = operation.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | meaning |", "|---|---|---|---|---|"]
        for param in params:
            lines.append(
                f"| `{param['name']}` | {param['in']} | {_schema_name(param.get('schema', {}))} "
                f"| {'yes' if param.get('required') else 'no'} "
                f"| {cell(param.get('description', ''))} |"
            )
        lines.append("")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if body:
        lines += [f"Request body: {_schema_name(body['schema'])}", ""]
    lines += ["| status | meaning | body |", "|---|---|---|"]
    for status, response in operation.get("responses", {}).items():
        content = response.get("content", {}).get("application/json")
        shape = _schema_name(content["schema"]) if content and content.get("schema") else ""
        lines.append(f"| {status} | {cell(response.get('description', ''))} | {shape} |")
    return [*lines, ""]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [schema["description"].replace("``", "`"), ""]
    properties = schema.get("properties", {})
    if properties:
        required = set(schema.get("required", []))
        lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
        for field, spec in properties.items():
            lines.append(
                f"| `{field}` | {_schema_name(spec)} | {'yes' if field in required else 'no'} "
                f"| {cell(spec.get('description', ''))} |"
            )
    elif "enum" in schema:
        lines.append("One of " + ", ".join(f"`{json.dumps(value)}`" for value in schema["enum"]))
    return [*lines, ""]


def openapi_schema() -> dict[str, Any]:
    """The API's OpenAPI schema, from an app built on a throw-away home."""
    from trademl.config import Settings
    from trademl.serving.app import create_app

    with tempfile.TemporaryDirectory() as home:
        return create_app(Settings(home=home)).openapi()


def http_reference() -> str:
    """Markdown for every route and schema of the HTTP API."""
    schema = openapi_schema()
    lines = [
        "# HTTP reference",
        "",
        f"Generated from the OpenAPI schema of `trademl serve` (version {schema['info']['version']})",
        "when the site is built; a running server shows the same at `/docs` and `/openapi.json`.",
        "Errors share one body, [`ErrorResponse`](#errorresponse). Which routes need the",
        "`X-API-Key` header is in [Serving behind a reverse proxy](../how-to/reverse-proxy.md).",
        "",
        "## Routes",
        "",
    ]
    for path, item in schema["paths"].items():
        for method in METHODS:
            if method in item:
                lines += _operation(path, method, item[method])
    lines += ["## Schemas", ""]
    for name, component in sorted(schema.get("components", {}).get("schemas", {}).items()):
        lines += _schema(name, component)
    return "\n".join(lines)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is None or value == [] or value == {}:
        return "—"
    return f"`{value}`"


def settings_reference() -> str:
    """Markdown table of every ``TRADEML_*`` setting: variable, type, default, meaning."""
    from trademl.config import Settings

    lines = [
        "# Settings",
        "",
        "Generated from `trademl.config.Settings` when the site is built. Every setting is read",
        "from a `TRADEML_*` environment variable or a `.env` file in the working directory;",
        "secrets (`SecretStr`) are masked in every message and log.",
        "",
        "| variable | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        kind = getattr(field.annotation, "__name__", None) or str(field.annotation)
        kind = kind.replace("typing.", "").replace("pydantic.types.", "")
        lines.append(
            f"| `TRADEML_{name.upper()}` | {cell(kind)} | {_default(field)} "
            f"| {cell(field.description or '')} |"
        )
    return "\n".join([*lines, ""])


PAGES: dict[str, Callable[[], str]] = {
    "reference/cli.md": cli_reference,
    "reference/http.md": http_reference,
    "reference/settings.md": settings_reference,
}


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated reference pages to the site."""
    for uri, build in PAGES.items():
        files.append(File.generated(config, uri, content=build()))
    return files
