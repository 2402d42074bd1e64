"""ObjectMeta validation on create and update (apimachinery api/validation/objectmeta.go,
plus core's check that unqualified finalizer names are standard ones)."""

from __future__ import annotations

from typing import Any

from svcnet.api.errors import FieldError, forbidden, invalid_value, required
from svcnet.api.validation.common import (
    GoValue,
    NameFn,
    as_dict,
    as_int,
    as_list,
    as_str,
    go_slice,
    go_time,
    name_is_dns_label,
    validate_annotations,
    validate_immutable,
    validate_labels,
    validate_nonnegative,
    validate_qualified_name,
)

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
STANDARD_FINALIZERS = frozenset({"kubernetes", FINALIZER_ORPHAN, FINALIZER_FOREGROUND})
_BANNED_OWNERS = {("v1", "Event")}


def _validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    first_controller = ""
    for ref in as_list(refs):
        ref = as_dict(ref)
        api_version = as_str(ref.get("apiVersion"))
        version = api_version.rsplit("/", 1)[-1] if api_version else ""
        if not version:
            errs.append(invalid_value(f"{path}.apiVersion", api_version, "version must not be empty"))
        if not as_str(ref.get("kind")):
            errs.append(invalid_value(f"{path}.kind", as_str(ref.get("kind")), "must not be empty"))
        if not as_str(ref.get("name")):
            errs.append(invalid_value(f"{path}.name", as_str(ref.get("name")), "must not be empty"))
        if not as_str(ref.get("uid")):
            errs.append(invalid_value(f"{path}.uid", as_str(ref.get("uid")), "must not be empty"))
        if (api_version, as_str(ref.get("kind"))) in _BANNED_OWNERS:
            errs.append(
                invalid_value(
                    path, as_str(ref.get("name")), "/v1, Kind=Event is disallowed from being an owner"
                )
            )
        if ref.get("controller") is True:
            current = f"{as_str(ref.get('kind'))}/{as_str(ref.get('name'))}"
            if first_controller:
                errs.append(
                    invalid_value(
                        path,
                        as_str(ref.get("name")),
                        'Only one reference can have Controller set to true. Found "true" in references '
                        f"for {first_controller} and {current}",
                    )
                )
            else:
                first_controller = current
    return errs


def _validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    names = [as_str(f) for f in as_list(finalizers)]
    for name in names:
        errs.extend(validate_qualified_name(name, path))
    if FINALIZER_ORPHAN in names and FINALIZER_FOREGROUND in names:
        errs.append(
            invalid_value(path, go_slice(names), "finalizer orphan and foregroundDeletion cannot be both set")
        )
    # core's ValidateObjectMeta: a finalizer without a "/" must be a standard one.
    for i, name in enumerate(names):
        if "/" not in name and name not in STANDARD_FINALIZERS:
            errs.append(
                invalid_value(
                    f"{path}[{i}]",
                    name,
                    "name is neither a standard finalizer name nor is it fully qualified",
                )
            )
    return errs


def _validate_common(meta: dict[str, Any], namespaced: bool, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    namespace = as_str(meta.get("namespace"))
    if namespaced:
        if not namespace:
            errs.append(required(f"{path}.namespace"))
        else:
            errs.extend(
                invalid_value(f"{path}.namespace", namespace, m) for m in name_is_dns_label(namespace, False)
            )
    elif namespace:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    errs.extend(validate_nonnegative(as_int(meta.get("generation")), f"{path}.generation"))
    errs.extend(validate_labels(meta.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(meta.get("annotations"), f"{path}.annotations"))
    errs.extend(_validate_owner_references(meta.get("ownerReferences"), f"{path}.ownerReferences"))
    errs.extend(_validate_finalizers(meta.get("finalizers"), f"{path}.finalizers"))
    return errs


def validate_object_meta(
    meta: Any, namespaced: bool, name_fn: NameFn, path: str = "metadata"
) -> list[FieldError]:
    """ValidateObjectMeta: generateName and name against the kind's name rule, namespace,
    labels, annotations, owner references and finalizers."""
    meta = as_dict(meta)
    errs: list[FieldError] = []
    generate_name = as_str(meta.get("generateName"))
    if generate_name:
        errs.extend(
            invalid_value(f"{path}.generateName", generate_name, m) for m in name_fn(generate_name, True)
        )
    name = as_str(meta.get("name"))
    if not name:
        errs.append(required(f"{path}.name", "name or generateName is required"))
    else:
        errs.extend(invalid_value(f"{path}.name", name, m) for m in name_fn(name, False))
    errs.extend(_validate_common(meta, namespaced, path))
    return errs


def _or_null(value: Any) -> Any:
    return GoValue("null") if value is None else value


def validate_object_meta_update(new: Any, old: Any, path: str = "metadata") -> list[FieldError]:
    """ValidateObjectMetaUpdate. resourceVersion preconditions are the server's job (it fills
    the version in for unconditional updates before validation), so they are not checked here."""
    new, old = as_dict(new), as_dict(old)
    errs: list[FieldError] = []
    if old.get("deletionTimestamp"):
        extra = sorted(
            {as_str(f) for f in as_list(new.get("finalizers"))}
            - {as_str(f) for f in as_list(old.get("finalizers"))}
        )
        if extra:
            errs.append(
                forbidden(
                    f"{path}.finalizers",
                    "no new finalizers can be added if the object is being deleted, found new finalizers "
                    + str(go_slice(extra)),
                )
            )
    if as_int(new.get("generation")) < as_int(old.get("generation")):
        errs.append(
            invalid_value(f"{path}.generation", as_int(new.get("generation")), "must not be decremented")
        )
    for key in ("name", "namespace", "uid"):
        errs.extend(validate_immutable(as_str(new.get(key)), as_str(old.get(key)), f"{path}.{key}"))
    for key in ("creationTimestamp", "deletionTimestamp"):
        errs.extend(
            validate_immutable(
                new.get(key), old.get(key), f"{path}.{key}", rendered=_or_null(go_time(new.get(key)))
            )
        )
    errs.extend(
        validate_immutable(
            new.get("deletionGracePeriodSeconds"),
            old.get("deletionGracePeriodSeconds"),
            f"{path}.deletionGracePeriodSeconds",
            rendered=_or_null(new.get("deletionGracePeriodSeconds")),
        )
    )
    errs.extend(validate_labels(new.get("labels"), f"{path}.labels"))
    errs.extend(validate_annotations(new.get("annotations"), f"{path}.annotations"))
    errs.extend(_validate_owner_references(new.get("ownerReferences"), f"{path}.ownerReferences"))
    errs.extend(_validate_finalizers(new.get("finalizers"), f"{path}.finalizers"))
    return errs
