"""A multi-node cluster in network namespaces on one machine (`svcnet lab`, `svcnet up`)."""
