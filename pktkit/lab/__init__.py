"""``pktkit lab``: a scenario staged with the real kernel, captured, with ``truth.json``.

:func:`pktkit.lab.run.run_lab` records a run; :func:`pktkit.lab.stage.staged` keeps a scenario
standing for the length of a ``with`` block. Nothing is imported here: the traffic agent
(``pktkit.lab.agent``) runs inside every namespace and must not pay for pandas or the collector.
"""
