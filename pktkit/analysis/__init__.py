"""Stage 3, analysis: the packet table of many capture points → one ``packet_id`` per packet,
hops, clocks, latency, NAT flows checked against conntrack. :func:`pipeline.analyze` runs it."""
