"""List requests: options (selectors, limit/continue, resourceVersion/resourceVersionMatch),
continue tokens pinned to one snapshot revision, and the list body built from pre-encoded
objects.

Current-revision lists come from the watch cache. A continuation whose snapshot the cache no
longer holds, and an Exact read at an older revision, are served by a range read of the store
at that revision (the store is MVCC), so every page of one list shows the same snapshot.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from svcnet.api import errors, selectors
from svcnet.api.errors import StatusError
from svcnet.api.resources import Resource
from svcnet.apiserver.codec import parse_int64, query_int
from svcnet.apiserver.watchcache import Entry, WatchCache, decode_kv
from svcnet.store.interface import CompactedError, FutureRevisionError, Store

CONTINUE_VERSION = "meta.k8s.io/v1"
_STORE_PAGE = 500

Predicate = Callable[[dict[str, Any]], bool]


@dataclass
class ListOptions:
    label_selector: selectors.LabelSelector | None
    field_selector: selectors.FieldSelector | None
    limit: int
    continue_key: str | None  # start after this store key
    continue_rev: int | None
    resource_version: str  # "" unset
    rv_match: str  # "" unset, "Exact", "NotOlderThan"
    rv_value: int | None

    def predicate(self) -> Predicate | None:
        return make_predicate(self.label_selector, self.field_selector)


def make_predicate(
    label: selectors.LabelSelector | None, field: selectors.FieldSelector | None
) -> Predicate | None:
    label = label if label is not None and not label.empty else None
    field = field if field is not None and not field.empty else None
    if label is None and field is None:
        return None
    if field is None:
        assert label is not None
        return lambda obj: label.matches((obj.get("metadata") or {}).get("labels"))
    if label is None:
        return field.matches
    return lambda obj: label.matches((obj.get("metadata") or {}).get("labels")) and field.matches(obj)


def parse_selectors(
    query: Any, resource: Resource
) -> tuple[selectors.LabelSelector | None, selectors.FieldSelector | None]:
    label_text = query.get("labelSelector")
    field_text = query.get("fieldSelector")
    label = selectors.parse_label_selector(label_text) if label_text else None
    field = selectors.parse_field_selector(field_text, resource) if field_text else None
    return label, field


def parse_resource_version(raw: str, what: str = "resourceVersion") -> int:
    try:
        value = parse_int64(raw)
    except StatusError:
        raise errors.bad_request(
            f'invalid {what}: strconv.ParseUint: parsing "{raw}": invalid syntax'
        ) from None
    if value < 0:
        raise errors.bad_request(f'invalid {what}: strconv.ParseUint: parsing "{raw}": invalid syntax')
    return value


def encode_continue(rev: int, key: str, resource: Resource) -> str:
    start = key[len(resource.storage_prefix) :] + "\x00"
    token = orjson.dumps({"v": CONTINUE_VERSION, "rv": rev, "start": start})
    return base64.urlsafe_b64encode(token).decode()


def decode_continue(token: str, resource: Resource) -> tuple[str, int]:
    """(start-after key, snapshot revision); 400 for anything that is not our token."""

    def bad(detail: str) -> StatusError:
        return errors.bad_request(f"continue key is not valid: {detail}")

    try:
        padded = token + "=" * (-len(token) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise bad("illegal base64 data or JSON in the continue token") from None
    if not isinstance(data, dict):
        raise bad("the continue token is not an object")
    if data.get("v") != CONTINUE_VERSION:
        raise bad("server does not recognize this encoded version")
    rev = data.get("rv")
    if isinstance(rev, bool) or not isinstance(rev, int) or rev <= 0:
        raise bad(f"incorrect encoded start resourceVersion (version {CONTINUE_VERSION})")
    start = data.get("start")
    if not isinstance(start, str) or not start:
        raise bad("encoded start key empty")
    if not start.endswith("\x00"):
        raise bad("encoded start key is malformed")
    rel = start[:-1]
    # Like upstream, refuse keys that would walk out of the resource's key space.
    if (
        rel.startswith("/")
        or ".." in rel.split("/")
        or (rel and posixpath.normpath(rel) != rel)
        or "\x00" in rel
    ):
        raise bad(rel)
    return resource.storage_prefix + rel, rev


def parse_list_options(query: Any, resource: Resource, watch: bool = False) -> ListOptions:
    label, field = parse_selectors(query, resource)
    limit = query_int(query, "limit") or 0
    token = query.get("continue") or ""
    rv = query.get("resourceVersion") or ""
    match = query.get("resourceVersionMatch") or ""
    if match and match not in ("Exact", "NotOlderThan"):
        raise errors.invalid(
            "ListOptions",
            "",
            [errors.not_supported("resourceVersionMatch", match, ("Exact", "NotOlderThan"))],
        )
    if not watch:
        if match and not rv:
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.forbidden(
                        "resourceVersionMatch",
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    )
                ],
            )
        if match and token:
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"
                    )
                ],
            )
        if match == "Exact" and rv == "0":
            raise errors.invalid(
                "ListOptions",
                "",
                [
                    errors.forbidden(
                        "resourceVersionMatch",
                        'resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                    )
                ],
            )
    rv_value = parse_resource_version(rv) if rv else None
    continue_key = continue_rev = None
    if token and not watch:
        if rv and rv != "0":
            raise errors.bad_request("specifying resource version is not allowed when using continue")
        continue_key, continue_rev = decode_continue(token, resource)
    return ListOptions(label, field, limit, continue_key, continue_rev, rv, match, rv_value)


def too_large_rv(requested: int, current: int) -> StatusError:
    return StatusError(
        504,
        "Timeout",
        f"Too large resource version: {requested}, current: {current}",
        {
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
    )


def list_expired() -> StatusError:
    return errors.expired("The resourceVersion for the provided list is too old.")


def continue_expired() -> StatusError:
    return errors.expired(
        "The provided continue parameter is too old to display a consistent list result. You can "
        "start a new list without the continue parameter, or use the continue token in this "
        "response to retrieve the remainder of the results. Continuing with the provided token "
        "results in an inconsistent list - objects that were created, modified, or deleted between "
        "the time the first chunk was returned and now may show up in the list."
    )


@dataclass
class ListPage:
    raws: list[bytes]
    revision: int
    continue_token: str | None
    remaining: int | None


class Lister:
    def __init__(self, store: Store, cache: WatchCache, wait_seconds: float) -> None:
        self.store = store
        self.cache = cache
        self.wait_seconds = wait_seconds

    async def list(self, resource: Resource, namespace: str | None, opts: ListOptions) -> ListPage:
        cache = self.cache.cache(resource)
        pred = opts.predicate()
        if opts.continue_rev is not None:
            rev = opts.continue_rev
            if rev > self.cache.revision and (
                rev > await self.store.current_revision()
                or not await self.cache.wait_for(rev, self.wait_seconds)
            ):
                raise errors.bad_request(
                    "continue key is not valid: the encoded resourceVersion is in the future"
                )
            if cache.last_change <= rev:
                # Nothing changed in this resource since the snapshot: the cache still shows it.
                return self._from_cache(resource, namespace, opts, pred, rev, opts.continue_key)
            return await self._from_store(
                resource, namespace, opts, pred, rev, opts.continue_key, expired=continue_expired
            )
        if opts.rv_match == "Exact" and opts.rv_value is not None:
            rev = opts.rv_value
            if rev > self.cache.revision and (
                rev > await self.store.current_revision()
                or not await self.cache.wait_for(rev, self.wait_seconds)
            ):
                raise too_large_rv(rev, self.cache.revision)
            if cache.last_change <= rev <= self.cache.revision:
                return self._from_cache(resource, namespace, opts, pred, rev, None)
            return await self._from_store(resource, namespace, opts, pred, rev, None, expired=list_expired)
        if opts.resource_version == "":
            # A consistent read: everything committed so far. Should the cache be stuck, the
            # store answers instead, as kube-apiserver falls back to etcd.
            if not await self.cache.sync(self.wait_seconds):
                rev = await self.store.current_revision()
                return await self._from_store(
                    resource, namespace, opts, pred, rev, None, expired=list_expired
                )
        elif opts.rv_value and not await self.cache.wait_for(opts.rv_value, self.wait_seconds):
            raise too_large_rv(opts.rv_value, self.cache.revision)
        return self._from_cache(resource, namespace, opts, pred, self.cache.revision, None)

    def _from_cache(
        self,
        resource: Resource,
        namespace: str | None,
        opts: ListOptions,
        pred: Predicate | None,
        rev: int,
        start_after: str | None,
    ) -> ListPage:
        rcache = self.cache.cache(resource)
        if pred is None and opts.limit > 0:
            # No selector: the page is a slice, and the rest of the collection is countable
            # (remainingItemCount, which upstream sets only for unfiltered lists).
            keys, lo, hi = rcache.key_range(namespace, start_after)
            end = min(lo + opts.limit, hi)
            items = rcache.items
            raws = [items[keys[i]].raw for i in range(lo, end)]
            if end < hi:
                return ListPage(raws, rev, encode_continue(rev, keys[end - 1], resource), hi - end)
            return ListPage(raws, rev, None, None)
        return self._page(rcache.entries(namespace, start_after), opts.limit, pred, rev, resource)

    def _page(
        self, entries: Iterable[Entry], limit: int, pred: Predicate | None, rev: int, resource: Resource
    ) -> ListPage:
        raws: list[bytes] = []
        last_key: str | None = None
        if limit <= 0:
            raws = [e.raw for e in entries] if pred is None else [e.raw for e in entries if pred(e.obj)]
            return ListPage(raws, rev, None, None)
        it = iter(entries)
        for entry in it:
            if pred is not None and not pred(entry.obj):
                continue
            if len(raws) == limit:
                # One more match exists: this page ends at the previous key.
                return ListPage(raws, rev, encode_continue(rev, last_key or entry.key, resource), None)
            raws.append(entry.raw)
            last_key = entry.key
        return ListPage(raws, rev, None, None)

    async def _from_store(
        self,
        resource: Resource,
        namespace: str | None,
        opts: ListOptions,
        pred: Predicate | None,
        rev: int,
        start_after: str | None,
        expired: Callable[[], StatusError],
    ) -> ListPage:
        prefix = resource.prefix(namespace)
        limit = opts.limit
        raws: list[bytes] = []
        last_key: str | None = None
        cursor = start_after if start_after is not None and start_after >= prefix else None
        while True:
            want = _STORE_PAGE if limit <= 0 else max(limit - len(raws) + 1, 1)
            try:
                result = await self.store.range(prefix, revision=rev, start_after=cursor, limit=want)
            except CompactedError:
                raise expired() from None
            except FutureRevisionError:
                raise too_large_rv(rev, self.cache.revision) from None
            for kv in result.kvs:
                entry = decode_kv(kv)
                if pred is not None and not pred(entry.obj):
                    continue
                if 0 < limit == len(raws):
                    return ListPage(raws, rev, encode_continue(rev, last_key or entry.key, resource), None)
                raws.append(entry.raw)
                last_key = entry.key
            if not result.more or not result.kvs:
                return ListPage(raws, rev, None, None)
            cursor = result.kvs[-1].key


def list_metadata(page: ListPage) -> dict[str, Any]:
    """The ListMeta of a page (a list body and a Table alike)."""
    meta: dict[str, Any] = {"resourceVersion": str(page.revision)}
    if page.continue_token:
        meta["continue"] = page.continue_token
    if page.remaining is not None:
        meta["remainingItemCount"] = page.remaining
    return meta


def list_body(resource: Resource, page: ListPage) -> bytes:
    meta = list_metadata(page)
    head = orjson.dumps({"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta})
    return head[:-1] + b',"items":[' + b",".join(page.raws) + b"]}"
