"""JSON Schemas of the elements the sync engine and the core read and write.

One file per element kind: ``file``, ``user``, ``volume``, ``rsyncGlobalParameters``,
``comment`` and ``link``. Elements are free-form JSON, so the schemas type the keys
they name and leave every other key open. Per-site keys (``synced_<site>``,
``syncError_<site>``, ``syncLastAttempt_<site>``, ``modified_<site>``,
``sync_<site>``, ...) are pattern properties.

>>> from damas_core.schemas import validate
>>> validate("file", {"_id": "/shots/a.exr", "file_size": 12, "synced_paris": 1})
>>> validate("file", {"_id": "/shots/a.exr", "file_size": "12"})
Traceback (most recent call last):
...
damas_core.errors.BadRequest: file error: key 'file_size': '12' is not of type 'integer'
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from damas_core.errors import BadRequest

NAMES: tuple[str, ...] = ("file", "user", "volume", "rsyncGlobalParameters", "comment", "link")


@cache
def _load(name: str) -> dict[str, Any]:
    if name not in NAMES:
        raise BadRequest(f"unknown schema {name!r} (known: {', '.join(NAMES)})")
    text = resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")
    return json.loads(text)


def load(name: str) -> dict[str, Any]:
    """A fresh copy of the schema ``name`` (one of :data:`NAMES`) as a dict.

    >>> load("volume")["properties"]["name"]["pattern"]
    '^(?!priority$)[a-z0-9_]{3,16}$'
    """
    return copy.deepcopy(_load(name))


@cache
def _validator(name: str, partial: bool) -> jsonschema.protocols.Validator:
    schema = load(name)
    if partial:
        # an update carries only the keys it changes
        schema.pop("required", None)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _key_of(error: jsonschema.ValidationError) -> str | None:
    path = [str(p) for p in error.absolute_path]
    if path:
        return path[0]
    if error.validator == "required" and isinstance(error.instance, dict):
        for key in error.validator_value:
            if key not in error.instance:
                return key
    return None


def validate(name: str, element: Any, *, partial: bool = False) -> None:
    """Check ``element`` against schema ``name``; raise :class:`BadRequest` naming the key.

    With ``partial=True`` the element is an update: required keys may be missing and a
    ``None`` value (which removes the key) is always allowed. Nothing is returned.

    >>> validate("volume", {"_id": "v1", "name": "paris", "url": "file:///srv/p/"})
    >>> validate("volume", {"_id": "v1", "name": "Paris!", "url": "file:///p/"})
    Traceback (most recent call last):
    ...
    damas_core.errors.BadRequest: volume error: key 'name': 'Paris!' does not match '^(?!priority$)[a-z0-9_]{3,16}$'
    """
    if not isinstance(element, dict):
        raise BadRequest(
            f"{name} error: an element must be an object, not {type(element).__name__}"
        )
    if partial:
        element = {k: v for k, v in element.items() if v is not None}
    validator = _validator(name, partial)
    error = jsonschema.exceptions.best_match(validator.iter_errors(element))
    if error is None:
        return
    key = _key_of(error)
    where = f"key {key!r}: " if key is not None else ""
    raise BadRequest(
        f"{name} error: {where}{error.message}", op=name, id=element.get("_id"), key=key
    )


__all__ = ["NAMES", "load", "validate"]
