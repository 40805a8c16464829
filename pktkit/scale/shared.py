"""State that every task of a step needs, given to the cluster once.

A step's shared state (the settled correlation state, the merged conversations, the NAT flow
table, the pending handshakes ...) grows with the flows: at 3M frames the pending handshakes
were 30 MB pickled, at 10.9M their key columns alone 41 MB. Given as an argument to each of
a step's P tasks, it was pickled P times into the graph (the scheduler, in the client's
process for a local cluster, held every copy) and each worker held a copy per task assigned
to it; the workers of a 1.5 GB limit died in the ``acked`` step. Scattered instead, it would
be lost with a killed worker and could not be made again.

:func:`given_once` makes it the result of one task instead: the graph holds it once, each
worker fetches it once for all its tasks (and can spill it, Dask knowing its size), and a
worker that dies loses nothing the scheduler cannot make again from that task.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client, Future

def given_once(client: Client, value: Any, name: str) -> Future:
    """``value`` as the result of one task (key ``pktkit-NAME-…``), for tasks to take as an
    argument: Dask hands them the value."""
    return client.submit(_value, value, pure=False, key=f"pktkit-{name}-{secrets.token_hex(4)}")


def _value(value: Any) -> Any:
    return value
