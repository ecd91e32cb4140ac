"""Pydantic's validation errors rewritten as parameter paths and what is expected.

Pydantic reports Python types (``int_type``, ``extra_forbidden``); a user of ``kedro run`` needs
``upscale.imput_dir: unknown key; valid keys: device, precision, ...``.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


def describe_errors(error: ValidationError, path: str, schema: Any) -> str:
    """One line per error: ``<path>.<key>: <what is expected>, got <value>``."""
    lines = []
    for item in error.errors():
        loc = [part for part in item["loc"] if not _is_branch_tag(part)]
        where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
        keys = [p for p in loc if isinstance(p, str)]
        message = _describe(item, schema, keys, path.split(".", 1)[0]).replace("{param}", where)
        # A rule that ties keys of a block names each by its full path, and opens with one.
        lines.append(message if message.startswith(f"{where}.") else f"{where}: {message}")
    return "\n".join(dict.fromkeys(lines))


def _describe(item: dict[str, Any], schema: Any, keys: list[str], block: str) -> str:
    kind, ctx, got = item["type"], item.get("ctx") or {}, item["input"]
    if kind == "extra_forbidden":
        return f"unknown key; valid keys: {', '.join(_fields_at(schema, keys[:-1]))}"
    if kind == "missing":
        conf = "parameters.yml" if block == "scale" else f"parameters_{block}.yml"
        return f"missing; conf/base/{conf} lists every key with its default"
    if kind == "value_error":  # our own rules: the message already says what and what was got
        return str(ctx.get("error", item["msg"]))
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}, got {got!r}"
    expected = {
        "int_type": "an integer", "int_from_float": "an integer", "bool_type": "true or false",
        "float_type": "a number", "float_parsing": "a number",
        "finite_number": "a finite number", "string_type": "a string",
        "model_type": "a mapping of keys", "dict_type": "a mapping", "list_type": "a list",
        "tuple_type": "a list", "literal_error": ctx.get("expected", ""),
    }.get(kind)
    if expected is None:
        return f"{item['msg'].replace('Input should be', 'must be')}, got {got!r}"
    return f"must be {expected}, got {got!r}"


def _is_branch_tag(part: Any) -> bool:
    # Pydantic names the branch of a union it tried (e.g. "function-after[...]"): not a key.
    return isinstance(part, str) and ("[" in part or part in ("none", "int", "str"))


def _fields_at(schema: Any, keys: list[str]) -> list[str]:
    """Field names of the model found by following ``keys`` from ``schema``."""
    model = model_in(schema)
    for key in keys:
        if model is None:
            break
        if key in model.model_fields:
            model = model_in(model.model_fields[key].annotation)
        # else: a free key of a mapping (a source name): the model stays the mapping's value
    return list(model.model_fields) if model is not None else []


def model_in(schema: Any) -> type[BaseModel] | None:
    """The model inside ``schema``: itself, or inside Optional / dict[str, model] / Annotated."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    if get_origin(schema) in (Union, dict, Annotated) or type(schema).__name__ == "UnionType":
        for arg in get_args(schema):
            found = model_in(arg)
            if found is not None:
                return found
    return None
