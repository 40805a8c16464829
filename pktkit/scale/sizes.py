"""The memory a part held on a worker takes, as Dask should count it.

Dask sizes a task's result with :func:`dask.sizeof.sizeof`, which knows arrays and DataFrames
but counts any other object as ``sys.getsizeof`` does: a :class:`~pktkit.analysis.parts.Part`
of 500,000 rows (~200 MB) as 56 bytes. The worker then sees its parts as *unmanaged* memory:
its dashboard shows them so, and its memory manager, which spills the largest managed data
first, cannot weigh what it evicts. Registered here: an object of the kinds below counts its
attributes, each as Dask sizes it (arrays, DataFrames, and these kinds again); a tables
step's ``Held`` is registered the same way where it is defined (:mod:`pktkit.scale.tables`,
which imports this module).
"""

from __future__ import annotations

import sys

from dask.sizeof import sizeof

from pktkit.analysis.parts import Part
from pktkit.analysis.sightings import Units
from pktkit.analysis.table_parts import PacketPart


def attribute_bytes(value: object) -> int:
    """``value``'s own size and its attributes' (each by :func:`dask.sizeof.sizeof`)."""
    return sys.getsizeof(value) + sum(sizeof(attribute) for attribute in vars(value).values())


for _kind in (Part, Units, PacketPart):
    sizeof.register(_kind)(attribute_bytes)
