"""Scale-out on dask.distributed: a cluster for one run, captures decoded in parallel into a
dataset, the analysis on a cluster (``pktkit packets|analyze --workers N|auto``,
``--scheduler ADDRESS``).

:mod:`~pktkit.scale.cluster` starts a local cluster (or connects to one) and closes it however
the run ends; :mod:`~pktkit.scale.decode` writes a packet dataset with one task per capture or
per chunk of a large one; :mod:`~pktkit.scale.analyze` runs the analysis on the cluster. Only the
CLI imports this package (and it imports capture, analysis and report, never the reverse), so
that nothing below it pays for importing Dask.
"""

import os

# Rows a worker received from another (a shuffle, a gather) may sit at any byte offset of the
# message. Arrow's dataset writer (Acero) then printed "An input buffer was poorly aligned"
# once per buffer, 30 lines on a 3M-frame run, on the user's terminal; "reallocate" copies such
# a buffer instead. Set here, on import: every task of this package imports it on its worker
# before any Arrow work there, and Acero reads the variable once per process.
os.environ.setdefault("ACERO_ALIGNMENT_HANDLING", "reallocate")
