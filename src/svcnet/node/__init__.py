"""The node agent: registers a Node, runs the Pods bound to it as processes in their own
network namespaces, probes them and reports their status (kubelet's job, with a bridge CNI
and host-local IPAM built in)."""
