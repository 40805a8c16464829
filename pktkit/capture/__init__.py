"""Stage 2, capture: capture files in, the per-packet table out (and capture files out, for the
builders). Reading, decoding (a reference decoder and the numpy fast path), the packet table."""
