"""The legacy v1 Endpoints controller (issue #4)."""
