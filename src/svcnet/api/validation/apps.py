"""apps/v1 Deployment and StatefulSet validation (pkg/apis/apps/validation): spec basics,
selector required and matching the template labels, template pod spec, update rules."""

from __future__ import annotations

from typing import Any

from svcnet.api.errors import FieldError, forbidden, invalid_value, not_supported, required
from svcnet.api.validation.common import (
    GoValue,
    as_dict,
    as_int,
    as_str,
    go_label_selector,
    go_string_map,
    is_int,
    is_valid_percent,
    label_selector_is_empty,
    label_selector_matches,
    name_is_dns_label,
    name_is_dns_subdomain,
    semantic_equal,
    validate_immutable,
    validate_label_selector,
    validate_nonnegative,
)
from svcnet.api.validation.meta import validate_object_meta, validate_object_meta_update
from svcnet.api.validation.pod import validate_pod_template_spec

PVC_RETENTION_POLICIES = ("Delete", "Retain")


def _validate_template_for_controller(template: Any, selector: Any, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpecForReplicaSet / ForStatefulSet without the controller's own pod
    rules (``_validate_controller_pod_spec``)."""
    if template is None:
        return [required(path)]
    template = as_dict(template)
    errs: list[FieldError] = []
    labels = as_dict(template.get("metadata")).get("labels")
    if not label_selector_is_empty(selector) and not label_selector_matches(selector, labels):
        errs.append(
            invalid_value(
                f"{path}.metadata.labels",
                go_string_map(labels),
                "`selector` does not match template `labels`",
            )
        )
    errs.extend(validate_pod_template_spec(template, path))
    return errs


def _validate_controller_pod_spec(template: Any, path: str, controller: str) -> list[FieldError]:
    """A controller keeps its pods running, so they restart Always and may not have a deadline."""
    spec = as_dict(as_dict(template).get("spec"))
    errs: list[FieldError] = []
    if spec.get("restartPolicy") != "Always":
        errs.append(
            not_supported(f"{path}.spec.restartPolicy", as_str(spec.get("restartPolicy")), ("Always",))
        )
    if spec.get("activeDeadlineSeconds") is not None:
        errs.append(
            forbidden(
                f"{path}.spec.activeDeadlineSeconds",
                f"activeDeadlineSeconds in {controller} is not Supported",
            )
        )
    return errs


def _validate_selector(selector: Any, path: str, kind_word: str) -> list[FieldError]:
    if selector is None:
        return [required(path)]
    errs = validate_label_selector(selector, path)
    if label_selector_is_empty(selector):
        errs.append(
            invalid_value(path, go_label_selector(selector), f"empty selector is invalid for {kind_word}")
        )
    return errs


def _validate_int_or_percent(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, str):
        errs = [invalid_value(path, value, m) for m in is_valid_percent(value)]
        if not errs and int(value[:-1]) > 100:
            errs.append(invalid_value(path, value, "must not be greater than 100%"))
        return errs
    return validate_nonnegative(as_int(value), path)


def _is_zero(value: Any) -> bool:
    if isinstance(value, str) and is_valid_percent(value) == []:
        return int(value[:-1]) == 0
    return is_int(value) and value == 0


def _validate_deployment_strategy(strategy: Any, path: str) -> list[FieldError]:
    strategy = as_dict(strategy)
    strategy_type = as_str(strategy.get("type"))
    if strategy_type == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            return [
                forbidden(f"{path}.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
            ]
        return []
    if strategy_type == "RollingUpdate":
        rolling = strategy.get("rollingUpdate")
        if rolling is None:
            return [required(f"{path}.rollingUpdate", "this should be defaulted and never be nil")]
        rolling = as_dict(rolling)
        rpath = f"{path}.rollingUpdate"
        max_unavailable, max_surge = rolling.get("maxUnavailable"), rolling.get("maxSurge")
        errs = _validate_int_or_percent(max_unavailable, f"{rpath}.maxUnavailable")
        errs.extend(_validate_int_or_percent(max_surge, f"{rpath}.maxSurge"))
        if _is_zero(max_unavailable) and _is_zero(max_surge):
            errs.append(
                invalid_value(f"{rpath}.maxUnavailable", max_unavailable, "may not be 0 when `maxSurge` is 0")
            )
        return errs
    return [not_supported(path, strategy_type, ("Recreate", "RollingUpdate"))]


def _validate_deployment_spec(spec: Any) -> list[FieldError]:
    spec = as_dict(spec)
    errs = validate_nonnegative(as_int(spec.get("replicas")), "spec.replicas")
    selector = spec.get("selector")
    errs.extend(_validate_selector(selector, "spec.selector", "deployment"))
    template = spec.get("template")
    errs.extend(_validate_template_for_controller(template, selector, "spec.template"))
    if template is not None:  # a missing template is reported once, as required
        errs.extend(_validate_controller_pod_spec(template, "spec.template", "ReplicaSet"))
    errs.extend(_validate_deployment_strategy(spec.get("strategy"), "spec.strategy"))
    min_ready = as_int(spec.get("minReadySeconds"))
    errs.extend(validate_nonnegative(min_ready, "spec.minReadySeconds"))
    if spec.get("revisionHistoryLimit") is not None:
        errs.extend(
            validate_nonnegative(as_int(spec.get("revisionHistoryLimit")), "spec.revisionHistoryLimit")
        )
    if spec.get("progressDeadlineSeconds") is not None:
        deadline = as_int(spec.get("progressDeadlineSeconds"))
        errs.extend(validate_nonnegative(deadline, "spec.progressDeadlineSeconds"))
        if deadline <= min_ready:
            errs.append(
                invalid_value(
                    "spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"
                )
            )
    return errs


def validate_deployment(deployment: Any) -> list[FieldError]:
    deployment = as_dict(deployment)
    errs = validate_object_meta(deployment.get("metadata"), True, name_is_dns_subdomain)
    errs.extend(_validate_deployment_spec(deployment.get("spec")))
    return errs


def validate_deployment_update(deployment: Any, old: Any) -> list[FieldError]:
    deployment, old = as_dict(deployment), as_dict(old)
    errs = validate_object_meta_update(deployment.get("metadata"), old.get("metadata"))
    errs.extend(_validate_deployment_spec(deployment.get("spec")))
    selector = as_dict(deployment.get("spec")).get("selector")
    old_selector = as_dict(old.get("spec")).get("selector")
    errs.extend(
        validate_immutable(selector, old_selector, "spec.selector", rendered=go_label_selector(selector))
    )
    return errs


def _validate_workload_status(status: Any, kind_fields: tuple[str, ...]) -> list[FieldError]:
    status = as_dict(status)
    errs: list[FieldError] = []
    for key in ("replicas", *kind_fields, "observedGeneration"):
        errs.extend(validate_nonnegative(as_int(status.get(key)), f"status.{key}"))
    replicas = as_int(status.get("replicas"))
    for key in kind_fields:
        if key in ("updatedReplicas", "readyReplicas", "availableReplicas", "currentReplicas") and (
            as_int(status.get(key)) > replicas
        ):
            errs.append(
                invalid_value(
                    f"status.{key}", as_int(status.get(key)), "cannot be greater than status.replicas"
                )
            )
    if as_int(status.get("availableReplicas")) > as_int(status.get("readyReplicas")):
        errs.append(
            invalid_value(
                "status.availableReplicas",
                as_int(status.get("availableReplicas")),
                "cannot be greater than readyReplicas",
            )
        )
    return errs


def validate_deployment_status_update(deployment: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(deployment).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(
        _validate_workload_status(
            as_dict(deployment).get("status"),
            ("updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas"),
        )
    )
    return errs


# --------------------------------------------------------------------------------------------
# StatefulSet


def _validate_statefulset_spec(spec: Any) -> list[FieldError]:
    spec = as_dict(spec)
    errs: list[FieldError] = []
    policy = as_str(spec.get("podManagementPolicy"))
    if not policy:
        errs.append(required("spec.podManagementPolicy"))
    elif policy not in ("OrderedReady", "Parallel"):
        errs.append(invalid_value("spec.podManagementPolicy", policy, "must be 'OrderedReady' or 'Parallel'"))
    update = as_dict(spec.get("updateStrategy"))
    update_type = as_str(update.get("type"))
    if not update_type:
        errs.append(required("spec.updateStrategy"))
    elif update_type == "OnDelete":
        if update.get("rollingUpdate") is not None:
            errs.append(
                invalid_value(
                    "spec.updateStrategy.rollingUpdate",
                    GoValue("&apps.RollingUpdateStatefulSetStrategy{...}"),
                    "only allowed for updateStrategy 'RollingUpdate'",
                )
            )
    elif update_type == "RollingUpdate":
        rolling = update.get("rollingUpdate")
        if rolling is not None:
            rolling = as_dict(rolling)
            if rolling.get("partition") is not None:
                errs.extend(
                    validate_nonnegative(
                        as_int(rolling.get("partition")), "spec.updateStrategy.rollingUpdate.partition"
                    )
                )
            if rolling.get("maxUnavailable") is not None:
                errs.extend(
                    _validate_int_or_percent(
                        rolling.get("maxUnavailable"), "spec.updateStrategy.rollingUpdate.maxUnavailable"
                    )
                )
    else:
        errs.append(
            invalid_value("spec.updateStrategy", update_type, "must be 'RollingUpdate' or 'OnDelete'")
        )
    retention = spec.get("persistentVolumeClaimRetentionPolicy")
    if retention is not None:
        retention = as_dict(retention)
        for key in ("whenDeleted", "whenScaled"):
            value = as_str(retention.get(key))
            if value not in PVC_RETENTION_POLICIES:
                errs.append(
                    not_supported(
                        f"spec.persistentVolumeClaimRetentionPolicy.{key}", value, PVC_RETENTION_POLICIES
                    )
                )
    errs.extend(validate_nonnegative(as_int(spec.get("replicas")), "spec.replicas"))
    errs.extend(validate_nonnegative(as_int(spec.get("minReadySeconds")), "spec.minReadySeconds"))
    ordinals = spec.get("ordinals")
    if ordinals is not None:
        errs.extend(validate_nonnegative(as_int(as_dict(ordinals).get("start")), "spec.ordinals.start"))
    selector = spec.get("selector")
    errs.extend(_validate_selector(selector, "spec.selector", "statefulset"))
    errs.extend(_validate_template_for_controller(spec.get("template"), selector, "spec.template"))
    errs.extend(_validate_controller_pod_spec(spec.get("template"), "spec.template", "StatefulSet"))
    return errs


def validate_statefulset(statefulset: Any) -> list[FieldError]:
    statefulset = as_dict(statefulset)
    errs = validate_object_meta(statefulset.get("metadata"), True, name_is_dns_label)
    errs.extend(_validate_statefulset_spec(statefulset.get("spec")))
    return errs


_STATEFULSET_MUTABLE_SPEC = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


def validate_statefulset_update(statefulset: Any, old: Any) -> list[FieldError]:
    statefulset, old = as_dict(statefulset), as_dict(old)
    errs = validate_object_meta_update(statefulset.get("metadata"), old.get("metadata"))
    spec, old_spec = as_dict(statefulset.get("spec")), as_dict(old.get("spec"))
    fixed_new = {k: v for k, v in spec.items() if k not in _STATEFULSET_MUTABLE_SPEC}
    fixed_old = {k: v for k, v in old_spec.items() if k not in _STATEFULSET_MUTABLE_SPEC}
    errs.extend(_validate_statefulset_spec(spec))
    if not semantic_equal(fixed_new, fixed_old):
        errs.append(
            forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                "'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and "
                "'minReadySeconds' are forbidden",
            )
        )
    return errs


def validate_statefulset_status_update(statefulset: Any, old: Any) -> list[FieldError]:
    errs = validate_object_meta_update(as_dict(statefulset).get("metadata"), as_dict(old).get("metadata"))
    errs.extend(
        _validate_workload_status(
            as_dict(statefulset).get("status"),
            ("readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas"),
        )
    )
    return errs
