"""HTTP handlers of the resource API: verb dispatch, request options, field validation
warnings, and replies. Object semantics live in registry.py, lists in listing.py, watches
in watch.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from svcnet.api import apply as applylib
from svcnet.api import defaults, errors, schema
from svcnet.api import patch as patchlib
from svcnet.api.errors import StatusError
from svcnet.api.resources import Resource
from svcnet.api.selectors import go_quote
from svcnet.apiserver import codec, discovery, keys, openapi, routing, tables
from svcnet.apiserver.codec import json_response, query_bool, query_int
from svcnet.apiserver.listing import Lister, list_body, list_metadata, parse_list_options
from svcnet.apiserver.objectmeta import cannot_handle, deep_copy
from svcnet.apiserver.options import ApiServerOptions
from svcnet.apiserver.registry import DeleteOptions, Registry, scale_of
from svcnet.apiserver.watch import serve_watch
from svcnet.apiserver.watchcache import WatchCache

log = logging.getLogger("svcnet.apiserver.handlers")

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
APPLY_PATCH_TYPES = ("application/apply-patch+yaml", "application/apply-patch+cbor")
FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


def unsupported_patch_type() -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, "
        "application/apply-patch+yaml",
    )


def patch_options_invalid(error: errors.FieldError) -> StatusError:
    return StatusError(
        422,
        "Invalid",
        f'PatchOptions.meta.k8s.io "" is invalid: {error.message()}',
        {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [error.cause()]},
    )


def field_manager(request: web.Request) -> str:
    """The manager an update is recorded under: ``fieldManager``, else upstream's fallback
    from the User-Agent."""
    agent = request.headers.get("User-Agent", "")
    return request.query.get("fieldManager") or applylib.default_manager(agent)


def record_update(
    request: web.Request,
    res: Resource,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    sub: str | None,
) -> None:
    """managedFields for a create/update/patch (see api/apply.py); compared after defaulting,
    as upstream compares the decoded (defaulted) objects."""
    if sub not in (None, "status"):
        return
    defaulted = deep_copy(new)
    with contextlib.suppress(Exception):  # a body that cannot be defaulted fails later, in the registry
        defaults.apply_defaults(defaulted)
    applylib.record_update(old, new, defaulted, field_manager(request), res.api_version, res.kind, sub)


def _warning_header(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


class RequestContext:
    """Per-request settings from the query: dryRun, fieldValidation, and collected warnings."""

    def __init__(self, request: web.Request, options_kind: str) -> None:
        query = request.query
        dry = query.getall("dryRun", [])
        for value in dry:
            if value != "All":
                raise errors.invalid(options_kind, "", [errors.not_supported("dryRun", value, ("All",))])
        self.dry_run = bool(dry)
        mode = query.get("fieldValidation", "") or "Warn"
        if mode not in FIELD_VALIDATION:
            raise errors.invalid(
                options_kind, "", [errors.not_supported("fieldValidation", mode, FIELD_VALIDATION)]
            )
        self.field_validation = mode
        self.warnings: list[str] = []

    def decode_fields(
        self,
        api_version: str,
        kind: str,
        obj: dict[str, Any],
        duplicates: list[str],
        decode_version: str,
        raw: bytes | None = None,
    ) -> dict[str, Any]:
        """What decoding into the kind's Go type yields: unknown and duplicate fields are a
        400 under Strict and Warning headers under Warn, and unknown fields are dropped."""
        if self.field_validation == "Ignore":
            return schema.drop_unknown_fields(api_version, kind, obj)
        unknown = schema.unknown_fields(api_version, kind, obj)
        problems: list[str] | None = None
        if duplicates and raw is not None:
            # Rare: let the schema walk the raw document, which knows where upstream's decoder
            # looks for duplicates and reports everything in document order.
            with contextlib.suppress(ValueError):
                problems = schema.strict_decoding_errors(raw, api_version, kind)
        if problems is None:
            problems = [f"duplicate field {go_quote(p)}" for p in duplicates]
            problems += [f"unknown field {go_quote(p)}" for p in unknown]
        if problems and self.field_validation == "Strict":
            raise errors.bad_request(
                f'{kind} in version "{decode_version}" cannot be handled as a {kind}: '
                f"strict decoding error: {', '.join(problems)}"
            )
        self.warnings.extend(problems)
        # Nothing unknown (the usual case): nothing to drop, skip the copy.
        return schema.drop_unknown_fields(api_version, kind, obj) if unknown else obj

    def respond(self, body: Any, status: int = 200) -> web.Response:
        response = json_response(body, status)
        for text in self.warnings:
            response.headers.add("Warning", _warning_header(text))
        return response


@contextlib.contextmanager
def decoding_guard(resource: Resource, obj: Any) -> Iterator[None]:
    """A body of the right JSON shape but wrong types inside fails in Go's decoder with a 400;
    here it surfaces as a Python type error in defaulting or validation. Map it the same way."""
    try:
        yield
    except StatusError:
        raise
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
        log.debug("body of %s could not be handled", resource.kind, exc_info=True)
        raise cannot_handle(resource, obj, f"{type(exc).__name__}: {exc}") from None


class ResourceHandlers:
    def __init__(
        self, options: ApiServerOptions, cache: WatchCache, registry: Registry, lister: Lister
    ) -> None:
        self.options = options
        self.cache = cache
        self.registry = registry
        self.lister = lister

    # ---- discovery -------------------------------------------------------------------------

    async def api_versions(self, request: web.Request) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return self._aggregated(request, core=True)
        return self._discovery(request, discovery.api_versions())

    def _aggregated(self, request: web.Request, core: bool) -> web.Response:
        response = self._discovery(request, discovery.aggregated(core))
        response.content_type = "application/json"
        response.headers["Content-Type"] = discovery.AGGREGATED_V2
        response.headers["Vary"] = "Accept"
        return response

    async def core_resources(self, request: web.Request) -> web.Response:
        return self._discovery(request, discovery.resource_list("", "v1"))

    async def api_groups(self, request: web.Request) -> web.Response:
        if discovery.wants_aggregated(request.headers.get("Accept", "")):
            return self._aggregated(request, core=False)
        return self._discovery(request, discovery.api_group_list())

    async def api_group(self, request: web.Request) -> web.Response:
        return self._discovery(request, discovery.api_group(request.match_info["group"]))

    async def group_resources(self, request: web.Request) -> web.Response:
        info = request.match_info
        return self._discovery(request, discovery.resource_list(info["group"], info["version"]))

    async def version(self, request: web.Request) -> web.Response:
        return self._discovery(request, discovery.version_info(self.options))

    async def openapi_index(self, request: web.Request) -> web.Response:
        # The first call builds every document (about a second of CPU): off the event loop.
        index = await asyncio.get_running_loop().run_in_executor(None, openapi.index)
        return self._discovery(request, index)

    async def openapi_v2(self, request: web.Request) -> web.Response:
        response = self._discovery(request, openapi.v2_json())
        if openapi.V2_PROTOBUF in request.headers.get("Accept", ""):
            response.body = openapi.v2_protobuf()
            response.content_type = openapi.V2_PROTOBUF_REPLY
        return response

    async def openapi_document(self, request: web.Request) -> web.Response:
        where = openapi.parse_doc_path(request.match_info["tail"])
        loop = asyncio.get_running_loop()
        doc = await loop.run_in_executor(None, openapi.document, *where) if where is not None else None
        response = self._discovery(request, {} if doc is not None else None)
        response.body = doc
        return response

    @staticmethod
    def _discovery(request: web.Request, body: dict[str, Any] | None) -> web.Response:
        request[keys.VERB] = "get"
        request[keys.RESOURCE] = ""
        if request.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        if body is None:
            raise routing.not_found_status()
        return json_response(body)

    # ---- resources -----------------------------------------------------------------------

    async def core(self, request: web.Request) -> web.StreamResponse:
        return await self._dispatch(request, "", "v1", request.match_info["tail"])

    async def grouped(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        return await self._dispatch(request, info["group"], info["version"], info["tail"])

    async def _dispatch(
        self, request: web.Request, group: str, version: str, tail: str
    ) -> web.StreamResponse:
        target = routing.parse(group, version, tail.split("/"))
        request[keys.RESOURCE] = routing.metric_resource(target)
        res, ns, name, sub = target.resource, target.namespace, target.name, target.subresource
        method = request.method
        if res.namespaced and ns is None and (name is not None or method not in ("GET", "HEAD")):
            if name is not None:
                raise routing.not_found_status()
            raise self._not_allowed(request)
        if target.legacy_watch:
            if method != "GET":
                raise self._not_allowed(request)
            request[keys.VERB] = "watch"
            return await serve_watch(request, self.cache, self.options, res, ns, name)
        if name is None:
            if method in ("GET", "HEAD"):
                if query_bool(request.query, "watch"):
                    request[keys.VERB] = "watch"
                    return await serve_watch(request, self.cache, self.options, res, ns, None)
                request[keys.VERB] = "list"
                return await self.list(request, res, ns)
            if method == "POST":
                request[keys.VERB] = "create"
                return await self.create(request, res, ns)
            if method == "DELETE" and "deletecollection" in res.verbs:
                request[keys.VERB] = "deletecollection"
                return await self.delete_collection(request, res, ns)
            raise self._not_allowed(request)
        allowed = (
            {"GET", "HEAD", "PUT", "PATCH"} if sub is not None else {"GET", "HEAD", "PUT", "PATCH", "DELETE"}
        )
        if sub == "finalize":
            allowed = {"PUT"}
        if sub == "binding":
            allowed = {"POST"}
        if method not in allowed:
            raise self._not_allowed(request)
        if sub == "binding":
            request[keys.VERB] = "create"
            return await self.bind(request, res, ns, name)
        if method in ("GET", "HEAD"):
            if sub is None and query_bool(request.query, "watch"):
                request[keys.VERB] = "watch"
                return await serve_watch(request, self.cache, self.options, res, ns, name)
            request[keys.VERB] = "get"
            return await self.get(request, res, ns, name, sub)
        if method == "PUT":
            request[keys.VERB] = "update"
            return await self.update(request, res, ns, name, sub)
        if method == "PATCH":
            request[keys.VERB] = "patch"
            return await self.patch(request, res, ns, name, sub)
        request[keys.VERB] = "delete"
        return await self.delete(request, res, ns, name)

    @staticmethod
    def _not_allowed(request: web.Request) -> StatusError:
        request.setdefault(keys.VERB, request.method.lower())
        return errors.method_not_allowed("the server does not allow this method on the requested resource")

    # ---- verbs ---------------------------------------------------------------------------

    async def get(
        self, request: web.Request, res: Resource, ns: str | None, name: str, sub: str | None
    ) -> web.Response:
        obj = await self.registry.get(res, ns, name)
        if sub == "scale":
            obj = scale_of(res, obj)
        table_version = tables.wants_table(request.headers.get("Accept", ""))
        if table_version is not None:
            # `kubectl get --subresource=status|scale` asks for tables too.
            include = tables.include_object(request.query)
            meta = {"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")}
            kind = tables.SCALE if sub == "scale" else res
            return json_response(tables.table(kind, [obj], include, table_version, meta))
        return json_response(obj)

    async def list(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        opts = parse_list_options(request.query, res)
        table_version = tables.wants_table(request.headers.get("Accept", ""))
        include = tables.include_object(request.query) if table_version is not None else ""
        page = await self.lister.list(res, ns, opts)
        if table_version is not None:
            objects = [orjson.loads(raw) for raw in page.raws]
            return json_response(tables.table(res, objects, include, table_version, list_metadata(page)))
        return json_response(list_body(res, page))

    async def _read_object(
        self, request: web.Request, res: Resource, kind: str
    ) -> tuple[dict[str, Any], list[str], bytes | None]:
        """(object, duplicate field paths, raw JSON body or None for YAML)."""
        body = await codec.read_body(request, self.options.max_body_bytes)
        content_type = codec.media_type(request)
        obj, dups = codec.decode_object(body, content_type, kind)
        return obj, dups, (None if content_type in codec.YAML_TYPES else body)

    async def bind(self, request: web.Request, res: Resource, ns: str | None, name: str) -> web.Response:
        """pods/NAME/binding: assign the pod to a node; answers a Success Status as upstream."""
        ctx = RequestContext(request, "CreateOptions")
        obj, _dups, _raw = await self._read_object(request, res, "Binding")
        with decoding_guard(res, obj):
            await self.registry.bind_pod(ns or "", name, obj, dry_run=ctx.dry_run)
        return ctx.respond({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "code": 201}, 201)

    async def create(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        ctx = RequestContext(request, "CreateOptions")
        obj, dups, raw = await self._read_object(request, res, res.kind)
        with decoding_guard(res, obj):
            self.registry.check_type(res, obj)
            obj = ctx.decode_fields(res.api_version, res.kind, obj, dups, res.version, raw)
            record_update(request, res, None, obj, None)
            created = await self.registry.create(res, ns, obj, dry_run=ctx.dry_run)
        return ctx.respond(created, 201)

    async def update(
        self, request: web.Request, res: Resource, ns: str | None, name: str, sub: str | None
    ) -> web.Response:
        ctx = RequestContext(request, "UpdateOptions")
        if sub == "scale":
            obj, dups, raw = await self._read_object(request, res, "Scale")
            with decoding_guard(res, obj):
                self.registry.check_type(res, obj, "autoscaling/v1", "Scale")
                obj = ctx.decode_fields("autoscaling/v1", "Scale", obj, dups, "v1", raw)
                scale = await self.registry.update_scale(res, ns, name, obj, dry_run=ctx.dry_run)
            return ctx.respond(scale)
        obj, dups, raw = await self._read_object(request, res, res.kind)
        with decoding_guard(res, obj):
            self.registry.check_type(res, obj)
            obj = ctx.decode_fields(res.api_version, res.kind, obj, dups, res.version, raw)
            try:
                old: dict[str, Any] | None = await self.registry.get(res, ns, name)
            except StatusError:
                old = None
            record_update(request, res, old, obj, sub)
            result, created = await self.registry.update(
                res, ns, name, obj, subresource=sub, dry_run=ctx.dry_run
            )
        return ctx.respond(result, 201 if created else 200)

    async def patch(
        self, request: web.Request, res: Resource, ns: str | None, name: str, sub: str | None
    ) -> web.Response:
        ctx = RequestContext(request, "PatchOptions")
        content_type = codec.media_type(request)
        if content_type == APPLY_PATCH_TYPES[0]:
            return await self.server_side_apply(request, ctx, res, ns, name, sub)
        if content_type not in PATCH_TYPES:
            raise unsupported_patch_type()
        if "force" in request.query:
            raise patch_options_invalid(errors.forbidden("force", "may not be specified for non-apply patch"))
        body = await codec.read_body(request, self.options.max_body_bytes)
        try:
            patch_doc, dups = codec.decode_json(body)
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from None
        mode = PATCH_TYPES[content_type]
        api_version, kind = ("autoscaling/v1", "Scale") if sub == "scale" else (res.api_version, res.kind)
        decode_version = "v1" if sub == "scale" else res.version

        def apply(doc: dict[str, Any]) -> dict[str, Any]:
            if mode == "json":
                return patchlib.json_patch(doc, patch_doc)
            if mode == "merge":
                return patchlib.merge_patch(doc, patch_doc)
            return patchlib.strategic_merge_patch(doc, patch_doc, api_version, kind)

        def decode_patched(patched: dict[str, Any]) -> dict[str, Any]:
            ctx.warnings.clear()  # a retried patch reports the warnings of its last attempt
            return ctx.decode_fields(api_version, kind, patched, dups, decode_version)

        def apply_and_record(doc: dict[str, Any]) -> dict[str, Any]:
            before = deep_copy(doc) if sub != "scale" else None
            patched = apply(doc)
            if before is not None and isinstance(patched, dict):
                record_update(request, res, before, patched, sub)
            return patched

        with decoding_guard(res, patch_doc):
            result = await self.registry.patch(
                res, ns, name, apply_and_record, subresource=sub, dry_run=ctx.dry_run, decode=decode_patched
            )
        return ctx.respond(result)

    async def server_side_apply(
        self,
        request: web.Request,
        ctx: RequestContext,
        res: Resource,
        ns: str | None,
        name: str,
        sub: str | None,
    ) -> web.Response:
        """PATCH with application/apply-patch+yaml: merge by field ownership (api/apply.py);
        creates the object when it does not exist, as upstream does for apply."""
        manager = request.query.get("fieldManager") or ""
        if not manager:
            raise patch_options_invalid(errors.required("fieldManager", "is required for apply patch"))
        force = query_bool(request.query, "force")
        if sub not in (None, "status"):
            raise unsupported_patch_type()
        body = await codec.read_body(request, self.options.max_body_bytes)
        applied, dups = codec.decode_object(body, "application/yaml", res.kind)
        with decoding_guard(res, applied):
            self.registry.check_type(res, applied)
            unknown = schema.unknown_fields(res.api_version, res.kind, applied)
            if unknown:
                # Upstream builds a typed object from the applied configuration and fails on
                # any field the schema lacks, whatever fieldValidation says (with a 500).
                problems = [f".{path}: field not declared in schema" for path in unknown]
                text = (
                    problems[0]
                    if len(problems) == 1
                    else "\n".join(["errors:", *("  " + p for p in problems)])
                )
                gvk = f"{res.group}/{res.version}, Kind={res.kind}"
                raise StatusError(
                    500, "", f"failed to create typed patch object ({ns or ''}/{name}; {gvk}): {text}"
                )
            applied = ctx.decode_fields(res.api_version, res.kind, applied, dups, res.version)

            def merge(live: dict[str, Any] | None) -> dict[str, Any]:
                return applylib.apply(
                    live,
                    applied,
                    manager,
                    res.api_version,
                    res.kind,
                    force=force,
                    resource=res.plural,
                    group=res.group,
                    subresource=sub,
                )

            for _ in range(2):
                try:
                    result = await self.registry.patch(
                        res, ns, name, merge, subresource=sub, dry_run=ctx.dry_run
                    )
                    return ctx.respond(result)
                except StatusError as exc:
                    if exc.code != 404 or sub is not None or exc.reason != "NotFound":
                        raise
                fresh = merge(None)
                md = fresh.setdefault("metadata", {})
                md.setdefault("name", name)
                if ns is not None:
                    md.setdefault("namespace", ns)
                try:
                    created = await self.registry.create(res, ns, fresh, dry_run=ctx.dry_run)
                    return ctx.respond(created, 201)
                except StatusError as exc:
                    if exc.reason != "AlreadyExists":
                        raise  # else: created meanwhile, apply to it on the next round
        raise errors.conflict(res.plural, name, res.group)

    async def _delete_options(self, request: web.Request) -> tuple[DeleteOptions, bool]:
        query = request.query
        opts = DeleteOptions(
            grace_period_seconds=query_int(query, "gracePeriodSeconds"),
            propagation_policy=query.get("propagationPolicy") or None,
        )
        if "orphanDependents" in query:
            opts.orphan_dependents = query_bool(query, "orphanDependents")
        dry = list(query.getall("dryRun", []))
        body = await codec.read_body(request, self.options.max_body_bytes)
        if body.strip():
            try:
                doc, _ = codec.decode_json(body)
            except (ValueError, RecursionError, UnicodeDecodeError) as exc:
                raise errors.bad_request(
                    f"the object provided is unrecognized (must be of type DeleteOptions): "
                    f"couldn't get version/kind; json parse error: {exc}"
                ) from None
            if not isinstance(doc, dict):
                raise errors.bad_request(
                    "the object provided is unrecognized (must be of type DeleteOptions)"
                )
            opts = self._merge_delete_body(opts, doc)
            dry_body = doc.get("dryRun")
            if isinstance(dry_body, list):
                dry.extend(str(v) for v in dry_body)
        for value in dry:
            if value != "All":
                raise errors.invalid("DeleteOptions", "", [errors.not_supported("dryRun", value, ("All",))])
        if opts.orphan_dependents is not None and opts.propagation_policy is not None:
            raise errors.invalid(
                "DeleteOptions",
                "",
                [
                    errors.invalid_value(
                        "propagationPolicy",
                        opts.propagation_policy,
                        "orphanDependents and deletionPropagation cannot be both set",
                    )
                ],
            )
        return opts, bool(dry)

    @staticmethod
    def _merge_delete_body(opts: DeleteOptions, doc: dict[str, Any]) -> DeleteOptions:
        def typed(field: str, value: Any, kind: type | tuple[type, ...], go: str) -> Any:
            if value is None:
                return None
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
                raise errors.bad_request(
                    f'DeleteOptions in version "v1" cannot be handled as a DeleteOptions: json: cannot '
                    f"unmarshal into Go struct field DeleteOptions.{field} of type {go}"
                )
            return value

        grace = typed("gracePeriodSeconds", doc.get("gracePeriodSeconds"), int, "int64")
        if grace is not None:
            opts.grace_period_seconds = grace
        policy = typed("propagationPolicy", doc.get("propagationPolicy"), str, "v1.DeletionPropagation")
        if policy is not None:
            opts.propagation_policy = policy
        orphan = typed("orphanDependents", doc.get("orphanDependents"), bool, "bool")
        if orphan is not None:
            opts.orphan_dependents = orphan
        pre = typed("preconditions", doc.get("preconditions"), dict, "v1.Preconditions")
        if pre:
            uid = typed("preconditions.uid", pre.get("uid"), str, "types.UID")
            rv = typed("preconditions.resourceVersion", pre.get("resourceVersion"), str, "string")
            opts.precondition_uid = uid
            opts.precondition_rv = rv
        return opts

    async def delete(self, request: web.Request, res: Resource, ns: str | None, name: str) -> web.Response:
        opts, dry_run = await self._delete_options(request)
        result = await self.registry.delete(res, ns, name, opts, dry_run=dry_run)
        status = 200
        if not result.deleted and opts.orphan_dependents is False:
            status = 202
        return json_response(result.body, status)

    async def delete_collection(self, request: web.Request, res: Resource, ns: str | None) -> web.Response:
        opts, dry_run = await self._delete_options(request)
        list_opts = parse_list_options(request.query, res)
        list_opts.limit = 0
        page = await self.lister.list(res, ns, list_opts)
        deleted: list[bytes] = []
        for raw in page.raws:
            obj = orjson.loads(raw)
            md = obj.get("metadata", {})
            try:
                result = await self.registry.delete(
                    res, md.get("namespace"), md.get("name", ""), opts, dry_run=dry_run
                )
            except StatusError as exc:
                if exc.code == 404:
                    continue  # deleted meanwhile: upstream ignores NotFound here too
                raise
            body = result.body if result.body.get("kind") != "Status" else obj
            deleted.append(orjson.dumps(body))
        head = orjson.dumps(
            {
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(self.cache.revision)},
            }
        )
        return json_response(head[:-1] + b',"items":[' + b",".join(deleted) + b"]}")


def add_routes(app: web.Application, handlers: ResourceHandlers) -> None:
    router = app.router
    router.add_route("*", "/api", handlers.api_versions)
    router.add_route("*", "/api/", handlers.api_versions)
    router.add_route("*", "/api/v1", handlers.core_resources)
    router.add_route("*", "/api/v1/", handlers.core_resources)
    router.add_route("*", "/api/v1/{tail:.+}", handlers.core)
    router.add_route("*", "/apis", handlers.api_groups)
    router.add_route("*", "/apis/", handlers.api_groups)
    router.add_route("*", "/apis/{group}", handlers.api_group)
    router.add_route("*", "/apis/{group}/", handlers.api_group)
    router.add_route("*", "/apis/{group}/{version}", handlers.group_resources)
    router.add_route("*", "/apis/{group}/{version}/", handlers.group_resources)
    router.add_route("*", "/apis/{group}/{version}/{tail:.+}", handlers.grouped)
    router.add_route("*", "/version", handlers.version)
    router.add_route("*", "/openapi/v2", handlers.openapi_v2)
    router.add_route("*", "/openapi/v3", handlers.openapi_index)
    router.add_route("*", "/openapi/v3/", handlers.openapi_index)
    router.add_route("*", "/openapi/v3/{tail:.+}", handlers.openapi_document)
    router.add_route("*", "/version/", handlers.version)
