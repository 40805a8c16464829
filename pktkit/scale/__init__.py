"""Scale-out on dask.distributed: a cluster for one run, captures decoded in parallel into a
dataset, the analysis on a cluster (``pktkit packets|analyze --workers N|auto``,
``--scheduler ADDRESS``).

:mod:`~pktkit.scale.cluster` starts a local cluster (or connects to one) and closes it however
the run ends; :mod:`~pktkit.scale.decode` writes a packet dataset with one task per capture or
per chunk of a large one; :mod:`~pktkit.scale.analyze` runs the analysis on the cluster. Only the
CLI imports this package (and it imports capture, analysis and report, never the reverse), so
that nothing below it pays for importing Dask.
"""
