"""ClusterIP and NodePort allocation (issue #4)."""
