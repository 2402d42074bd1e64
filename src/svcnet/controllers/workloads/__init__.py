"""Workload controllers: Deployment and StatefulSet, managing Pods directly (svcnet serves no
ReplicaSet or ControllerRevision), plus the runner that starts them with the scheduler."""
