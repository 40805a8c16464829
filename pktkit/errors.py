"""pktkit's own exceptions: every failure a user can cause ends up as one of these.

The CLI prints ``pktkit: error: <message>`` and exits with ``exit_code``; library users catch
:class:`PktkitError`. Messages are one line and name the file or value, the place, and what to do.
"""

from __future__ import annotations


class PktkitError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""

    exit_code: int = 2


class UsageError(PktkitError):
    """A bad argument or parameter value (unknown scenario, VNI out of range, ...)."""


class CaptureError(PktkitError):
    """A file that cannot be read as a capture at all (not a capture, unknown format, ...)."""


class OutputError(PktkitError):
    """An output location that cannot be written."""


class ClusterError(PktkitError):
    """Work a Dask cluster could not finish: a task whose workers died every time it ran
    (out of memory, most often). Exit 1: not a problem of the input."""

    exit_code = 1


class ConntrackFormatError(UsageError):
    """A conntrack dump that is none of the formats ``parse_conntrack`` reads."""


class MetadataError(UsageError):
    """A ``--k8s`` or ``--docker`` file that is not the kubectl / docker inspect JSON asked for."""
