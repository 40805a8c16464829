"""Stage 1, craft: scenario builders that write what tcpdump would record at every capture
point, with a ground-truth label for every frame (Scapy lives only here)."""
