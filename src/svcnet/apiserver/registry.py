"""Object storage semantics, as kube-apiserver's generic registry store implements them:
create (uid, creationTimestamp, generateName with retries), update with optimistic
concurrency, patch, status and scale subresources, deletion with preconditions, finalizers and
graceful Pod deletion, and namespace lifecycle admission.

Each write runs upstream's order: decode (by the caller), default, prepare (strategy),
validate, store. The store's compare-and-swap is the concurrency control.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svcnet.api import defaults, errors, names, resources, strategy, validation
from svcnet.api.errors import FieldError, StatusError
from svcnet.api.resources import Resource
from svcnet.api.validation.common import LOOPBACK_DETAIL
from svcnet.apiserver.allocator.service import ServiceAllocator, allocate_and_write
from svcnet.apiserver.objectmeta import (
    deep_copy,
    encode_for_store,
    metadata_of,
    now_rfc3339,
    without_rv,
)
from svcnet.apiserver.watchcache import WatchCache, decode_kv
from svcnet.store.interface import (
    CompareFailedError,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    Op,
    Put,
    Store,
)
from svcnet.store.interface import Delete as DeleteOp

log = logging.getLogger("svcnet.apiserver.registry")

NAMESPACES = resources.by_path("", "v1", "namespaces")
assert NAMESPACES is not None

# generic registry: RetryGenerateName retries a generated name up to 8 times.
GENERATE_NAME_ATTEMPTS = 8
# GuaranteedUpdate retries an unconditional update/patch that lost a compare-and-swap for as
# long as it takes; a bound only keeps a pathological hot key from spinning forever.
UPDATE_ATTEMPTS = 1000
# AllowCreateOnUpdate() is true for these strategies (PUT to a missing object creates it).
CREATE_ON_UPDATE = {"services", "endpoints", "events", "leases"}
# NamespaceLifecycle admission refuses to delete these.
IMMORTAL_NAMESPACES = ("default", "kube-system", "kube-public")
# Strategies whose Delete returns the deleted object rather than a Status (ReturnDeletedObject).
RETURNS_DELETED_OBJECT = {"services", "pods", "namespaces"}
NAMESPACE_FINALIZER = "kubernetes"
TERMINAL_POD_PHASES = ("Succeeded", "Failed")
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    propagation_policy: str | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    orphan_dependents: bool | None = None


@dataclass
class DeleteResult:
    body: dict[str, Any]
    deleted: bool  # removed from the store now (False: marked for deletion)


def _invalid(resource: Resource, name: str, errs: list[FieldError]) -> StatusError:
    return errors.invalid(resource.kind, name, errs, resource.group)


def _path_segment_errors(name: str) -> list[str]:
    """apimachinery IsValidPathSegmentName: a name must be usable as one URL path segment."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


class Registry:
    def __init__(self, store: Store, cache: WatchCache, wait_seconds: float = 3.0) -> None:
        self.store = store
        self.cache = cache
        self.wait_seconds = wait_seconds
        # Called with a namespace name once it is marked for deletion (namespaces.py).
        self.on_namespace_terminating: Callable[[str], None] | None = None
        # ClusterIP/NodePort allocation for Services (issue #4); None: no allocation.
        self.service_allocator: ServiceAllocator | None = None
        # ApiServerOptions.allow_loopback_endpoints (a deliberate difference, off by default).
        self.allow_loopback_endpoints = False

    def _endpoint_errors(self, obj: dict[str, Any], errs: list[FieldError]) -> list[FieldError]:
        """With allow_loopback_endpoints, drop the loopback refusals of Endpoints and
        EndpointSlice addresses (everything else about them is validated as upstream does)."""
        if not self.allow_loopback_endpoints or obj.get("kind") not in ("Endpoints", "EndpointSlice"):
            return errs
        return [e for e in errs if e.detail != LOOPBACK_DETAIL]

    def _allocates(self, resource: Resource) -> bool:
        return self.service_allocator is not None and resource.plural == "services"

    # ---- reads ---------------------------------------------------------------------------

    async def get_kv(self, resource: Resource, namespace: str | None, name: str) -> KeyValue:
        kv = await self.store.get(resource.key(namespace, name))
        if kv is None:
            raise errors.not_found(resource.plural, name, resource.group)
        return kv

    async def get(self, resource: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return decode_kv(await self.get_kv(resource, namespace, name)).obj

    # ---- shared checks ---------------------------------------------------------------------

    def check_type(
        self, resource: Resource, obj: dict[str, Any], api_version: str | None = None, kind: str | None = None
    ) -> None:
        """Fill apiVersion/kind from the URL when absent; reject a body of another type."""
        want_version = api_version or resource.api_version
        want_kind = kind or resource.kind
        got_version = obj.get("apiVersion")
        got_kind = obj.get("kind")
        if got_version in (None, ""):
            obj["apiVersion"] = got_version = want_version
        if got_kind in (None, ""):
            obj["kind"] = got_kind = want_kind
        if not isinstance(got_version, str) or not isinstance(got_kind, str):
            raise errors.bad_request(
                f"the object provided is unrecognized (must be of type {want_kind}): couldn't get "
                f"version/kind; json parse error: json: cannot unmarshal into Go struct field "
                f".apiVersion of type string"
            )
        if got_version != want_version:
            raise errors.bad_request(
                f"the API version in the data ({got_version}) does not match the expected API "
                f"version ({want_version})"
            )
        if got_kind != want_kind:
            version = got_version.rsplit("/", 1)[-1]
            raise errors.bad_request(
                f'{got_kind} in version "{version}" cannot be handled as a {want_kind}: the kind in '
                f"the data ({got_kind}) does not match the expected kind ({want_kind})"
            )

    def check_namespace(self, resource: Resource, metadata: dict[str, Any], namespace: str | None) -> None:
        """EnsureObjectNamespaceMatchesRequestNamespace."""
        got = metadata.get("namespace") or ""
        want = namespace or ""
        if not resource.namespaced:
            metadata.pop("namespace", None)
            return
        if got == want:
            return
        if got == "":
            metadata["namespace"] = want
            return
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )

    def check_name(self, metadata: dict[str, Any], name: str) -> None:
        got = metadata.get("name") or ""
        if got == "":
            metadata["name"] = name
        elif got != name:
            raise errors.bad_request(
                f"the name of the object ({got}) does not match the name on the URL ({name})"
            )

    async def admit_namespace(self, resource: Resource, namespace: str | None, name: str) -> None:
        """NamespaceLifecycle admission: the namespace must exist and not be terminating."""
        if not resource.namespaced or not namespace:
            return
        entry = self.cache.cache(NAMESPACES).items.get(NAMESPACES.key(None, namespace))
        ns_obj = entry.obj if entry is not None else None
        if ns_obj is None:
            # The cache may trail a namespace created a moment ago: ask the store.
            kv = await self.store.get(NAMESPACES.key(None, namespace))
            if kv is None:
                raise errors.not_found("namespaces", namespace)
            ns_obj = decode_kv(kv).obj
        if ns_obj.get("metadata", {}).get("deletionTimestamp") or (
            ns_obj.get("status", {}).get("phase") == "Terminating"
        ):
            message = f"unable to create new content in namespace {namespace} because it is being terminated"
            qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise StatusError(
                403,
                "Forbidden",
                f'{qualified} "{name}" is forbidden: {message}',
                {
                    "name": name,
                    **({"group": resource.group} if resource.group else {}),
                    "kind": resource.plural,
                    "causes": [
                        {"reason": "NamespaceTerminating", "message": message, "field": "metadata.namespace"}
                    ],
                },
            )

    # ---- create --------------------------------------------------------------------------

    async def create(
        self, resource: Resource, namespace: str | None, obj: dict[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        self.check_type(resource, obj)
        metadata = metadata_of(obj, resource)
        self.check_namespace(resource, metadata, namespace)
        if metadata.get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        await self.admit_namespace(
            resource, metadata.get("namespace"), metadata.get("name") or metadata.get("generateName") or ""
        )
        defaults.apply_defaults(obj)
        metadata = metadata_of(obj, resource)
        metadata.pop("deletionTimestamp", None)
        metadata.pop("deletionGracePeriodSeconds", None)
        metadata.pop("selfLink", None)
        if resource is NAMESPACES:
            self._prepare_namespace_create(obj)
        strategy.prepare_for_create(obj)
        generated = not metadata.get("name") and bool(metadata.get("generateName"))
        attempts = GENERATE_NAME_ATTEMPTS if generated else 1
        for attempt in range(attempts):
            if generated:
                metadata["name"] = names.generate_name(metadata["generateName"])
            metadata["uid"] = new_uid()
            metadata["creationTimestamp"] = now_rfc3339()
            name = metadata.get("name") or ""
            if self._allocates(resource):
                try:
                    return await self._create_service(resource, obj, dry_run)
                except KeyExistsError:
                    if generated and attempt + 1 < attempts:
                        continue
                    raise errors.already_exists(resource.plural, name, resource.group) from None
            errs = self._baseline_name_errors(metadata)
            errs += self._endpoint_errors(obj, validation.validate_create(obj))
            if errs:
                raise _invalid(resource, name, _dedupe(errs))
            if dry_run:
                return obj
            key = resource.key(metadata.get("namespace"), name)
            try:
                kv = await self.store.create(key, encode_for_store(obj))
            except KeyExistsError:
                if generated and attempt + 1 < attempts:
                    continue
                raise errors.already_exists(resource.plural, name, resource.group) from None
            metadata["resourceVersion"] = str(kv.mod_revision)
            return obj
        raise AssertionError("unreachable")

    async def _create_service(self, resource: Resource, obj: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """Create a Service with its ClusterIPs and NodePorts claimed in the same transaction
        (upstream's BeginCreate allocates before validation, so validation sees them)."""
        allocator = self.service_allocator
        assert allocator is not None
        name = obj["metadata"].get("name") or ""
        key = resource.key(obj["metadata"].get("namespace"), name)

        validated = False

        def validate(planned: dict[str, Any]) -> None:
            nonlocal validated
            validated = True
            errs = self._baseline_name_errors(planned["metadata"]) + validation.validate_create(planned)
            if errs:
                raise _invalid(resource, name, _dedupe(errs))

        def invalid_spec(exc: StatusError) -> StatusError:
            # A value the allocator refuses may be invalid in itself (a port of 70000): then
            # the validation error is the clearer answer.
            errs = validation.validate_create(obj)
            return _invalid(resource, name, _dedupe(errs)) if errs and exc.code == 422 else exc

        if dry_run:  # show what would be allocated, claim nothing
            planned = deep_copy(obj)
            try:
                allocator.abort(allocator.plan(planned, None))
            except StatusError as exc:
                raise invalid_spec(exc) from None
            validate(planned)
            return planned

        async def write(planned: dict[str, Any] | None, ops: list[Op]) -> int:
            assert planned is not None
            validate(planned)
            try:
                return await self.store.txn([Put(key, encode_for_store(planned), 0), *ops])
            except CompareFailedError as exc:
                if exc.key == key:
                    raise KeyExistsError(key) from None
                raise

        try:
            planned, revision = await allocate_and_write(allocator, obj, None, write)
        except StatusError as exc:
            if not validated:
                raise invalid_spec(exc) from None
            raise
        assert planned is not None
        planned["metadata"]["resourceVersion"] = str(revision)
        return planned

    async def _write_service_update(
        self,
        resource: Resource,
        kv: KeyValue,
        old: dict[str, Any],
        obj: dict[str, Any],
        validate: Callable[[dict[str, Any]], list[FieldError]],
        dry_run: bool,
    ) -> dict[str, Any]:
        """The tail of write_update for a Service: allocations of old -> new planned, then
        validated, then written with the Service in one transaction."""
        allocator = self.service_allocator
        assert allocator is not None
        name = old["metadata"]["name"]

        validated = False

        def check(planned: dict[str, Any]) -> bool:
            nonlocal validated
            validated = True
            errs = validate(planned)
            if errs:
                raise _invalid(resource, name, _dedupe(errs))
            return without_rv(planned) == without_rv(old)

        def invalid_spec(exc: StatusError) -> StatusError:
            errs = [] if validated or exc.code != 422 else validate(obj)
            return _invalid(resource, name, _dedupe(errs)) if errs else exc

        if dry_run:
            planned = deep_copy(obj)
            try:
                allocator.abort(allocator.plan(planned, old))
            except StatusError as exc:
                raise invalid_spec(exc) from None
            if check(planned):
                return old
            planned["metadata"]["resourceVersion"] = str(kv.mod_revision)
            return planned
        unchanged = False

        async def write(planned: dict[str, Any] | None, ops: list[Op]) -> int:
            nonlocal unchanged
            assert planned is not None
            unchanged = check(planned)
            if unchanged:
                return kv.mod_revision  # a no-op update writes nothing
            return await self.store.txn([Put(kv.key, encode_for_store(planned), kv.mod_revision), *ops])

        try:
            planned, revision = await allocate_and_write(allocator, obj, old, write)
        except StatusError as exc:
            raise invalid_spec(exc) from None
        assert planned is not None
        if unchanged:
            return old
        planned["metadata"]["resourceVersion"] = str(revision)
        return planned

    async def _delete_service_kv(self, kv: KeyValue, obj: dict[str, Any]) -> int:
        """Delete a Service and release what it holds in one transaction; the revision."""
        assert self.service_allocator is not None

        async def write(_planned: dict[str, Any] | None, ops: list[Op]) -> int:
            return await self.store.txn([DeleteOp(kv.key, kv.mod_revision), *ops])

        _, revision = await allocate_and_write(self.service_allocator, None, obj, write)
        return revision

    @staticmethod
    def _baseline_name_errors(metadata: dict[str, Any]) -> list[FieldError]:
        """Checks every kind needs before a name becomes a store key."""
        name = metadata.get("name") or ""
        if not name:
            return [errors.required("metadata.name", "name or generateName is required")]
        return [errors.invalid_value("metadata.name", name, msg) for msg in _path_segment_errors(name)]

    @staticmethod
    def _prepare_namespace_create(obj: dict[str, Any]) -> None:
        # namespace strategy PrepareForCreate: phase Active, and the "kubernetes" finalizer
        # the namespace controller removes once the namespace is empty.
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = obj["spec"] = {}
        finalizers = spec.get("finalizers")
        if not isinstance(finalizers, list):
            finalizers = spec["finalizers"] = []
        if NAMESPACE_FINALIZER not in finalizers:
            finalizers.append(NAMESPACE_FINALIZER)
        obj["status"] = {"phase": "Active"}

    # ---- update --------------------------------------------------------------------------

    async def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        new: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """PUT. Returns (object, created)."""
        self.check_type(resource, new)
        metadata = metadata_of(new, resource)
        self.check_name(metadata, name)
        self.check_namespace(resource, metadata, namespace)
        defaults.apply_defaults(new)
        # "0" parses to revision 0 upstream, which means an unconditional update.
        want_rv = metadata_of(new, resource).get("resourceVersion") or None
        if want_rv == "0":
            want_rv = None
        key = resource.key(namespace, name)
        for _ in range(UPDATE_ATTEMPTS):
            kv = await self.store.get(key)
            if kv is None:
                if subresource is not None or resource.plural not in CREATE_ON_UPDATE:
                    raise errors.not_found(resource.plural, name, resource.group)
                fresh = deep_copy(new)
                # As upstream: a resourceVersion on a PUT that creates is not a precondition.
                fresh["metadata"].pop("resourceVersion", None)
                try:
                    return await self.create(resource, namespace, fresh, dry_run=dry_run), True
                except StatusError as exc:
                    if exc.reason == "AlreadyExists":
                        continue  # created meanwhile: update it on the next round
                    raise
            if want_rv is not None and want_rv != str(kv.mod_revision):
                raise errors.conflict(resource.plural, name, resource.group)
            old = decode_kv(kv).obj
            try:
                obj = await self.write_update(
                    resource, kv, old, deep_copy(new), subresource=subresource, dry_run=dry_run
                )
            except CompareFailedError:
                if want_rv is not None:
                    raise errors.conflict(resource.plural, name, resource.group) from None
                continue
            return obj, False
        raise errors.conflict(resource.plural, name, resource.group)

    async def write_update(
        self,
        resource: Resource,
        kv: KeyValue,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """BeforeUpdate, validation and the compare-and-swap write against ``kv``.
        Raises CompareFailedError when ``kv`` is no longer current."""
        name = old["metadata"]["name"]
        old_md = old["metadata"]
        if subresource == "finalize":
            # namespaces/finalize changes spec.finalizers and nothing else.
            obj = deep_copy(old)
            spec = new.get("spec") if isinstance(new.get("spec"), dict) else {}
            obj.setdefault("spec", {})["finalizers"] = spec.get("finalizers") or []
            errs = []
        elif subresource == "status":
            obj = deep_copy(old)
            obj["status"] = new.get("status") if isinstance(new.get("status"), dict) else {}
            strategy.prepare_for_status_update(obj, old)
            errs = validation.validate_status_update(obj, old)
        else:
            obj = new
            md = metadata_of(obj, resource)
            if "generation" in old_md:
                md["generation"] = old_md["generation"]
            else:
                md.pop("generation", None)
            if "status" in resource.subresources and subresource is None:
                # Main-resource updates keep the status; it changes only through /status.
                if "status" in old:
                    obj["status"] = deep_copy(old["status"])
                else:
                    obj.pop("status", None)
            if resource is NAMESPACES and subresource != "finalize":
                obj["spec"] = deep_copy(old.get("spec", {}))
            strategy.prepare_for_update(obj, old)
            md = metadata_of(obj, resource)
            if not md.get("uid"):
                md["uid"] = old_md.get("uid")
            if old_md.get("creationTimestamp"):
                md["creationTimestamp"] = old_md["creationTimestamp"]
            for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                if field in old_md:
                    md[field] = old_md[field]
                else:
                    md.pop(field, None)
            if self._allocates(resource) and not old_md.get("deletionTimestamp"):
                finalizer_errs = self._finalizer_errors(md, old_md)
                return await self._write_service_update(
                    resource, kv, old, obj,
                    lambda o: finalizer_errs + validation.validate_update(o, old), dry_run,
                )
            errs = self._finalizer_errors(md, old_md)
            errs += self._endpoint_errors(obj, validation.validate_update(obj, old))
        if errs:
            raise _invalid(resource, name, _dedupe(errs))
        md = obj["metadata"]
        if without_rv(obj) == without_rv(old):
            return old  # a no-op update writes nothing and keeps the resourceVersion
        if (
            old_md.get("deletionTimestamp")
            and not md.get("finalizers")
            and not md.get("deletionGracePeriodSeconds")
            and not (resource is NAMESPACES and (obj.get("spec") or {}).get("finalizers"))
        ):
            # ShouldDeleteDuringUpdate: the last finalizer is gone from an object being deleted.
            if dry_run:
                return obj
            if self._allocates(resource):
                md["resourceVersion"] = str(await self._delete_service_kv(kv, old))
            else:
                deleted = await self.store.delete(kv.key, kv.mod_revision)
                md["resourceVersion"] = str(deleted.mod_revision)
            self._after_delete(resource, obj)
            return obj
        if dry_run:
            md["resourceVersion"] = str(kv.mod_revision)
            return obj
        written = await self.store.update(kv.key, encode_for_store(obj), kv.mod_revision)
        md["resourceVersion"] = str(written.mod_revision)
        return obj

    @staticmethod
    def _finalizer_errors(md: dict[str, Any], old_md: dict[str, Any]) -> list[FieldError]:
        if not old_md.get("deletionTimestamp"):
            return []
        old = set(old_md.get("finalizers") or [])
        extra = sorted(f for f in md.get("finalizers") or [] if f not in old)
        if not extra:
            return []
        listed = ", ".join(f'"{f}"' for f in extra)
        return [
            errors.forbidden(
                "metadata.finalizers",
                f"no new finalizers can be added if the object is being deleted, "
                f"found new finalizers []string{{{listed}}}",
            )
        ]

    # ---- patch ---------------------------------------------------------------------------

    async def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        apply_patch: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        decode: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """``decode`` turns the patched JSON into what the kind keeps (field validation,
        unknown fields dropped), as decoding the patched bytes into the Go type does."""
        key = resource.key(namespace, name)
        for _ in range(UPDATE_ATTEMPTS):
            kv = await self.store.get(key)
            if kv is None:
                raise errors.not_found(resource.plural, name, resource.group)
            current = decode_kv(kv).obj
            view = scale_of(resource, current) if subresource == "scale" else deep_copy(current)
            patched = apply_patch(view)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patched object is not a JSON object")
            if decode is not None:
                patched = decode(patched)
            if subresource == "scale":
                self.check_type(resource, patched, "autoscaling/v1", "Scale")
            else:
                self.check_type(resource, patched)
            md = metadata_of(patched, resource)
            self.check_name(md, name)
            self.check_namespace(resource, md, namespace)
            pinned = md.get("resourceVersion") or None
            if pinned is not None and pinned != str(kv.mod_revision):
                raise errors.conflict(resource.plural, name, resource.group)
            try:
                if subresource == "scale":
                    return await self._write_scale(resource, kv, current, patched, dry_run)
                defaults.apply_defaults(patched)
                return await self.write_update(
                    resource, kv, current, patched, subresource=subresource, dry_run=dry_run
                )
            except CompareFailedError:
                # Someone wrote meanwhile: re-apply the patch to the new object. A patch that
                # carries a resourceVersion then fails the check above with 409.
                continue
        raise errors.conflict(resource.plural, name, resource.group)

    # ---- scale ---------------------------------------------------------------------------

    async def update_scale(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        scale: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        self.check_type(resource, scale, "autoscaling/v1", "Scale")
        md = metadata_of(scale, resource)
        self.check_name(md, name)
        self.check_namespace(resource, md, namespace)
        want_rv = md.get("resourceVersion") or None
        for _ in range(UPDATE_ATTEMPTS):
            kv = await self.get_kv(resource, namespace, name)
            if want_rv is not None and want_rv != str(kv.mod_revision):
                raise errors.conflict(resource.plural, name, resource.group)
            try:
                return await self._write_scale(resource, kv, decode_kv(kv).obj, scale, dry_run)
            except CompareFailedError:
                if want_rv is not None:
                    raise errors.conflict(resource.plural, name, resource.group) from None
        raise errors.conflict(resource.plural, name, resource.group)

    async def _write_scale(
        self, resource: Resource, kv: KeyValue, current: dict[str, Any], scale: dict[str, Any], dry_run: bool
    ) -> dict[str, Any]:
        spec = scale.get("spec")
        replicas = spec.get("replicas", 0) if isinstance(spec, dict) else 0
        if replicas is None:
            replicas = 0
        name = current["metadata"]["name"]
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            raise errors.bad_request(
                f'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                f"{type(replicas).__name__} into Go struct field ScaleSpec.spec.replicas of type int32"
            )
        if replicas < 0:
            raise errors.invalid(
                "Scale",
                name,
                [errors.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")],
                "autoscaling",
            )
        new = deep_copy(current)
        new.setdefault("spec", {})["replicas"] = replicas
        written = await self.write_update(resource, kv, current, new, dry_run=dry_run)
        return scale_of(resource, written)

    # ---- pods/binding --------------------------------------------------------------------

    async def bind_pod(
        self, namespace: str, name: str, binding: dict[str, Any], *, dry_run: bool = False
    ) -> None:
        """POST pods/NAME/binding, as upstream's BindingREST: assign an unscheduled pod to a
        node. This is the only way spec.nodeName changes after create (updates may not)."""
        pods = resources.by_path("", "v1", "pods")
        assert pods is not None
        self.check_type(pods, binding, "v1", "Binding")
        md = binding.get("metadata") if isinstance(binding.get("metadata"), dict) else {}
        if md.get("name") != name:
            raise errors.bad_request("name in URL does not match name in Binding object")
        target = binding.get("target") if isinstance(binding.get("target"), dict) else {}
        problems: list[FieldError] = []
        if target.get("kind") not in (None, "", "Node"):
            kind = target.get("kind")
            problems.append(errors.invalid_value("target.kind", kind, "must be empty or 'Node'"))
        node = target.get("name")
        if not isinstance(node, str) or not node:
            problems.append(errors.required("target.name", ""))
        if problems:
            raise errors.invalid("Binding", name, problems)
        for _ in range(UPDATE_ATTEMPTS):
            kv = await self.get_kv(pods, namespace, name)
            pod = decode_kv(kv).obj
            pod_md = pod["metadata"]
            if md.get("uid") and md["uid"] != pod_md.get("uid"):
                raise errors.conflict("pods", name, detail=(
                    f"Precondition failed: UID in precondition: {md['uid']}, UID in object meta: "
                    f"{pod_md.get('uid')}"))
            if pod_md.get("deletionTimestamp"):
                detail = f"pod {name} is being deleted, cannot be assigned to a host"
                raise errors.conflict("pods", name, detail=detail)
            assigned = (pod.get("spec") or {}).get("nodeName")
            if assigned:
                detail = f'pod {name} is already assigned to node "{assigned}"'
                raise errors.conflict("pods", name, detail=detail)
            bound = deep_copy(pod)
            bound.setdefault("spec", {})["nodeName"] = node
            if isinstance(md.get("annotations"), dict) and md["annotations"]:
                bound["metadata"].setdefault("annotations", {}).update(md["annotations"])
            conditions = [c for c in (bound.setdefault("status", {}).get("conditions") or [])
                          if c.get("type") != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                               "lastTransitionTime": now_rfc3339()})
            bound["status"]["conditions"] = conditions
            if dry_run:
                return
            try:
                await self.store.update(kv.key, encode_for_store(bound), kv.mod_revision)
                return
            except CompareFailedError:
                continue
        raise errors.conflict("pods", name)

    # ---- delete --------------------------------------------------------------------------

    async def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        options: DeleteOptions,
        *,
        dry_run: bool = False,
    ) -> DeleteResult:
        if options.propagation_policy is not None and options.propagation_policy not in PROPAGATION_POLICIES:
            raise errors.invalid(
                "DeleteOptions",
                "",
                [
                    errors.not_supported(
                        "propagationPolicy",
                        options.propagation_policy,
                        ("Foreground", "Background", "Orphan", "nil"),
                    )
                ],
            )
        key = resource.key(namespace, name)
        if resource is NAMESPACES and name in IMMORTAL_NAMESPACES:
            raise StatusError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        for _ in range(UPDATE_ATTEMPTS):
            kv = await self.get_kv(resource, namespace, name)
            obj = decode_kv(kv).obj
            self._check_preconditions(resource, obj, options)
            try:
                if resource is NAMESPACES:
                    return await self._delete_namespace(kv, obj, dry_run)
                return await self._delete_object(resource, kv, obj, options, dry_run)
            except (CompareFailedError, KeyNotFoundError):
                if options.precondition_rv is not None:
                    raise errors.conflict(resource.plural, name, resource.group) from None
                continue
        raise errors.conflict(
            resource.plural, name, resource.group, detail=f"deleting {key} kept conflicting"
        )

    @staticmethod
    def _check_preconditions(resource: Resource, obj: dict[str, Any], options: DeleteOptions) -> None:
        md = obj["metadata"]
        name = md.get("name", "")
        if options.precondition_uid is not None and options.precondition_uid != md.get("uid"):
            raise errors.conflict(
                resource.plural,
                name,
                resource.group,
                detail=(
                    f"Precondition failed: UID in precondition: {options.precondition_uid}, "
                    f"UID in object meta: {md.get('uid', '')}"
                ),
            )
        if options.precondition_rv is not None and options.precondition_rv != md.get("resourceVersion"):
            raise errors.conflict(
                resource.plural,
                name,
                resource.group,
                detail=(
                    f"Precondition failed: ResourceVersion in precondition: {options.precondition_rv}, "
                    f"ResourceVersion in object meta: {md.get('resourceVersion', '')}"
                ),
            )

    @staticmethod
    def _pod_grace(obj: dict[str, Any], options: DeleteOptions) -> int:
        """pod strategy CheckGracefulDelete."""
        spec = obj.get("spec") or {}
        grace = options.grace_period_seconds
        if grace is None:
            default = spec.get("terminationGracePeriodSeconds")
            grace = default if isinstance(default, int) and not isinstance(default, bool) else 30
        if grace < 0:
            grace = 1  # a negative grace period is turned into the shortest graceful one
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in TERMINAL_POD_PHASES:
            grace = 0  # nothing runs it (unscheduled) or nothing runs anymore: delete at once
        return grace

    async def _delete_object(
        self, resource: Resource, kv: KeyValue, obj: dict[str, Any], options: DeleteOptions, dry_run: bool
    ) -> DeleteResult:
        md = obj["metadata"]
        finalizers = md.get("finalizers") or []
        grace = self._pod_grace(obj, options) if resource.plural == "pods" else 0
        deleting = bool(md.get("deletionTimestamp"))
        if deleting:
            current_grace = md.get("deletionGracePeriodSeconds") or 0
            if grace >= current_grace or (finalizers and grace > 0):
                return DeleteResult(obj, False)  # already pending; a delete cannot lengthen it
        if finalizers or grace > 0:
            new = deep_copy(obj)
            nmd = new["metadata"]
            if not deleting or grace < (nmd.get("deletionGracePeriodSeconds") or 0):
                nmd["deletionTimestamp"] = now_rfc3339(grace)
                nmd["deletionGracePeriodSeconds"] = grace
            if not deleting and isinstance(nmd.get("generation"), int) and nmd["generation"] > 0:
                nmd["generation"] += 1
            if dry_run:
                return DeleteResult(new, False)
            written = await self.store.update(kv.key, encode_for_store(new), kv.mod_revision)
            nmd["resourceVersion"] = str(written.mod_revision)
            return DeleteResult(new, False)
        if dry_run:
            return DeleteResult(self._deleted_body(resource, obj), True)
        if self._allocates(resource):
            md["resourceVersion"] = str(await self._delete_service_kv(kv, obj))
        else:
            deleted = await self.store.delete(kv.key, kv.mod_revision)
            md["resourceVersion"] = str(deleted.mod_revision)
        self._after_delete(resource, obj, options)
        return DeleteResult(self._deleted_body(resource, obj), True)

    @staticmethod
    def _deleted_body(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        if resource.plural in RETURNS_DELETED_OBJECT:
            return obj
        md = obj["metadata"]
        details: dict[str, Any] = {"name": md.get("name", "")}
        if resource.group:
            details["group"] = resource.group
        details["kind"] = resource.plural
        details["uid"] = md.get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def _after_delete(
        self, resource: Resource, obj: dict[str, Any], options: DeleteOptions | None = None
    ) -> None:
        """Cascade to dependents named by ownerReferences (what the garbage collector does for
        Background and Foreground propagation; svcnet has no separate GC)."""
        policy = options.propagation_policy if options else None
        if policy == "Orphan" or (options is not None and options.orphan_dependents):
            return
        uid = obj.get("metadata", {}).get("uid")
        namespace = obj.get("metadata", {}).get("namespace")
        if not uid:
            return
        task = asyncio.get_running_loop().create_task(self._collect_dependents(uid, namespace))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _collect_dependents(self, owner_uid: str, namespace: str | None) -> None:
        await self.cache.sync(self.wait_seconds)
        for resource in resources.RESOURCES:
            rcache = self.cache.cache(resource)
            for key in list(rcache.dependents.get(owner_uid, ())):
                entry = rcache.items.get(key)
                if entry is None:
                    continue
                md = entry.obj.get("metadata", {})
                dep_ns, dep_name = md.get("namespace"), md.get("name", "")
                if resource.namespaced and namespace is not None and dep_ns != namespace:
                    continue  # ownerReferences never cross namespaces
                try:
                    await self.delete(
                        resource, dep_ns, dep_name, DeleteOptions(propagation_policy="Background")
                    )
                except StatusError as exc:
                    if exc.code != 404:
                        log.warning(
                            "deleting dependent %s %s/%s: %s", resource.plural, dep_ns, dep_name, exc.message
                        )
                except Exception:
                    log.exception("deleting dependent %s %s/%s", resource.plural, dep_ns, dep_name)

    async def _delete_namespace(self, kv: KeyValue, obj: dict[str, Any], dry_run: bool) -> DeleteResult:
        md = obj["metadata"]
        name = md["name"]
        if not md.get("deletionTimestamp"):
            new = deep_copy(obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            if dry_run:
                return DeleteResult(new, False)
            written = await self.store.update(kv.key, encode_for_store(new), kv.mod_revision)
            new["metadata"]["resourceVersion"] = str(written.mod_revision)
            if self.on_namespace_terminating is not None:
                self.on_namespace_terminating(name)
            return DeleteResult(new, False)
        if (obj.get("spec") or {}).get("finalizers") or md.get("finalizers"):
            return DeleteResult(obj, False)
        if dry_run:
            return DeleteResult(obj, True)
        deleted = await self.store.delete(kv.key, kv.mod_revision)
        md["resourceVersion"] = str(deleted.mod_revision)
        return DeleteResult(obj, True)


_BACKGROUND: set[asyncio.Task[None]] = set()
_UID_POOL: list[bytes] = []


def new_uid() -> str:
    """A random (version 4) UUID. Random bytes are read in batches: one getrandom() call per
    16 bytes was a visible share of a create."""
    if not _UID_POOL:
        block = os.urandom(16 * 256)
        _UID_POOL.extend(block[i : i + 16] for i in range(0, len(block), 16))
    return str(uuid.UUID(bytes=_UID_POOL.pop(), version=4))


def _dedupe(errs: list[FieldError]) -> list[FieldError]:
    seen: set[str] = set()
    out = []
    for e in errs:
        text = e.message()
        if text not in seen:
            seen.add(text)
            out.append(e)
    return out


# ---- autoscaling/v1 Scale ----------------------------------------------------------------


def selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String() for a workload's spec.selector."""
    if not isinstance(selector, dict):
        return ""
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((key, f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            continue
        key = expr.get("key", "")
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        op = expr.get("operator")
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(op)
        if text is not None:
            parts.append((key, text))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0]))


def scale_of(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    md = obj.get("metadata", {})
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    meta = {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in md}
    replicas = spec.get("replicas")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": meta,
        "spec": {"replicas": replicas if isinstance(replicas, int) else 1},
        "status": {
            "replicas": status.get("replicas", 0) or 0,
            "selector": selector_string(spec.get("selector")),
        },
    }
