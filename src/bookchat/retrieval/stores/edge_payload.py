"""Payload keys a collection only stores: folded into one JSON string the engine keeps but never parses.

qdrant-edge converts every payload value between Python and Rust on each write and each read, a few microseconds
a value (lists cost most): for bookchat's chunks that was a third of an upsert's time. A collection created with
`stored_payload_keys` keeps those keys (bookchat's display fields: text, title, url, heading path…) as one string
under `STORED_KEY`; results carry them unfolded, so callers see the payload they wrote. The price, stated where
it is paid: a filter or a payload index on a stored key is refused (Qdrant's strict mode refuses filters on keys
without an index the same way), since the engine cannot see inside the string.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from typing import Any

from qdrant_client import models

from bookchat.retrieval.stores.errors import UnsupportedRequest

# Reserved in collections with stored keys: the string that holds them.
STORED_KEY = "_bookchat_stored"

PayloadShape = Callable[[dict[str, Any] | None], dict[str, Any] | None]


class StoredKeyError(UnsupportedRequest):
    """A request the engine cannot answer because it names a stored key (the embedded engine's contract)."""


def top_level(key: str) -> str:
    """The payload key a path such as `meta.pages[0]` starts with."""
    return key.split(".", 1)[0].split("[", 1)[0]


def fold(payload: dict[str, Any] | None, stored: Collection[str]) -> dict[str, Any] | None:
    """`payload` with its `stored` keys folded into one JSON string (none present: none added). `stored` is best
    a frozenset: this runs for every point written."""
    if not stored or payload is None:
        return payload
    kept: dict[str, Any] = {}
    folded: dict[str, Any] = {}
    for key, value in payload.items():
        (folded if key in stored else kept)[key] = value
    if STORED_KEY in kept:
        raise StoredKeyError(f"the payload key {STORED_KEY!r} is reserved by the embedded engine")
    if folded:
        kept[STORED_KEY] = json.dumps(folded, ensure_ascii=False, separators=(",", ":"))
    return kept


def unfold(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The payload as it was written: the folded keys back in place."""
    if not payload or STORED_KEY not in payload:
        return payload
    unfolded = dict(payload)
    unfolded.update(json.loads(unfolded.pop(STORED_KEY)))
    return unfolded


def refold(payload: dict[str, Any] | None, stored: Collection[str]) -> dict[str, Any] | None:
    """A payload folded for other keys (or none), folded for `stored`."""
    return fold(unfold(payload), stored)


def check_filter(query_filter: models.Filter | None, stored: Collection[str]) -> None:
    """Refuse a filter that names a stored key: the engine would see no value there and match nothing."""
    if query_filter is None or not stored:
        return
    for key in _filter_keys(query_filter):
        if top_level(key) in stored:
            raise StoredKeyError(
                f"the payload key {key!r} is stored, not indexed, in this embedded collection: it cannot be "
                "filtered on (the collection was created with it in stored_payload_keys)"
            )


def _filter_keys(query_filter: models.Filter) -> Iterable[str]:
    clauses = [query_filter.must, query_filter.should, query_filter.must_not]
    if query_filter.min_should is not None:
        clauses.append(query_filter.min_should.conditions)
    for clause in clauses:
        for condition in clause if isinstance(clause, list) else [clause] if clause is not None else []:
            if isinstance(condition, models.Filter):
                yield from _filter_keys(condition)
            elif isinstance(condition, models.FieldCondition):
                yield condition.key
            elif isinstance(condition, models.IsEmptyCondition):
                yield condition.is_empty.key
            elif isinstance(condition, models.IsNullCondition):
                yield condition.is_null.key
            elif isinstance(condition, models.NestedCondition):
                yield condition.nested.key


def selection(with_payload: Any, stored: Collection[str]) -> tuple[Any, PayloadShape]:
    """What to ask the engine for, for qdrant-client's `with_payload`, and how to shape what it returns."""
    if not stored:
        return with_payload, _same
    include: list[str] | None = None
    exclude: list[str] | None = None
    if isinstance(with_payload, list):
        include = with_payload
    elif isinstance(with_payload, models.PayloadSelectorInclude):
        include = list(with_payload.include)
    elif isinstance(with_payload, models.PayloadSelectorExclude):
        exclude = list(with_payload.exclude)
    for key in (include or []) + (exclude or []):
        if top_level(key) in stored and key != top_level(key):
            raise StoredKeyError(f"{key!r} selects inside a stored payload key; select the whole {top_level(key)!r}")
    if include is not None and any(key in stored for key in include):
        asked = [key for key in include if key not in stored] + [STORED_KEY]
        wanted = {top_level(key) for key in include}
        return models.PayloadSelectorInclude(include=asked), lambda payload: _only(unfold(payload), wanted)
    if exclude is not None and any(key in stored for key in exclude):
        asked = [key for key in exclude if key not in stored]
        dropped = {key for key in exclude if key in stored}
        selector = models.PayloadSelectorExclude(exclude=asked) if asked else True
        return selector, lambda payload: _without(unfold(payload), dropped)
    return with_payload, unfold


def _same(payload: dict[str, Any] | None) -> dict[str, Any] | None:
    return payload


def _only(payload: dict[str, Any] | None, keys: set[str]) -> dict[str, Any] | None:
    return None if payload is None else {key: value for key, value in payload.items() if key in keys}


def _without(payload: dict[str, Any] | None, keys: set[str]) -> dict[str, Any] | None:
    return None if payload is None else {key: value for key, value in payload.items() if key not in keys}
