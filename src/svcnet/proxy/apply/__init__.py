"""Thin steps that hand rendered rules to the kernel (iptables-restore, ...)."""
