"""The user-space proxy mode: TCP/UDP forwarded in user space with IPVS's schedulers,
connection draining, passive health checks and no root needed (docs/userspace.md)."""
