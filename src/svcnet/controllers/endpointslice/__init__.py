"""The EndpointSlice controller (issue #4): desired endpoints from Pods, reconciled into slices
with upstream's churn-minimising algorithm."""
