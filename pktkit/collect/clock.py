"""The kernel's clock discipline state, read with ``adjtimex(2)`` (modes 0: read only).

Why: cross-node delays are only as good as the nodes' clocks. ``chronyc tracking`` says the
most, but needs a running chronyd; ``timedatectl`` needs systemd. ``adjtimex`` is always there
on Linux and says whether the kernel considers the clock synchronised (STA_UNSYNC), with the
estimated and maximum error, which is what the analysis wants to know.
"""

from __future__ import annotations

import ctypes
from typing import Any

STA_UNSYNC = 0x0040
TIME_STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT",
               5: "TIME_ERROR"}


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """``struct timex`` (x86-64 / aarch64 layout: longs, then 11 ints of padding)."""

    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time", _Timeval), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    ]


def adjtimex_state() -> dict[str, Any]:
    """The clock state as a JSON-able dict; ``{"error": ...}`` when it cannot be read."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library already in this process
        call = libc.adjtimex
    except (OSError, AttributeError) as exc:
        return {"error": f"adjtimex unavailable ({exc})"}
    timex = _Timex()
    state = call(ctypes.byref(timex))
    if state < 0:
        return {"error": f"adjtimex failed (errno {ctypes.get_errno()})"}
    return {
        "state": TIME_STATES.get(state, str(state)),
        "synchronised": not timex.status & STA_UNSYNC,
        "status": timex.status,
        "offset": timex.offset,  # µs, or ns with STA_NANO
        "freq_ppm": timex.freq / 65536,
        "maxerror_us": timex.maxerror,
        "esterror_us": timex.esterror,
        "tai_offset_s": timex.tai,
    }
