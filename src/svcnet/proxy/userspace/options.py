"""Settings of the user-space proxy (the flags of `svcnet proxy userspace`)."""

from __future__ import annotations

from dataclasses import dataclass

from svcnet.proxy.userspace.schedulers import DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_SCHEDULER

REDIRECT_MODES = ("auto", "iptables", "nftables", "none")


@dataclass
class UserspaceOptions:
    scheduler: str = DEFAULT_SCHEDULER
    maglev_table_size: int = DEFAULT_MAGLEV_TABLE_SIZE
    # Graceful termination: how long open connections of a removed endpoint may keep flowing.
    drain_timeout: float = 30.0
    # Per listener; beyond it new connections are reset at once (file descriptors stay bounded).
    max_connections: int = 10000
    # Passive health: a failed connect tries up to this many other endpoints.
    connect_retries: int = 3
    connect_timeout: float = 1.0
    # IPVS's defaults: 15 min established, 2 min after a FIN, 5 min for UDP.
    idle_timeout: float = 900.0
    half_close_timeout: float = 120.0
    udp_idle_timeout: float = 300.0
    # Active TCP checks (0 = off): connect to every endpoint this often.
    health_check_interval: float = 0.0
    # Forwarding of bulk flows through a pipe with os.splice (where the platform has it) instead
    # of 1 MB copies: off by default, as on loopback copies measured faster and cheaper in CPU.
    splice: bool = False
    # Where service addresses that are not local go: REDIRECT rules (iptables or nftables),
    # "auto" = nftables if `nft` works, else iptables; "none" = serve local addresses only.
    redirect: str = "auto"
    # Address the listeners behind REDIRECT rules bind (ports are chosen by the kernel).
    bind_address: str = "0.0.0.0"
