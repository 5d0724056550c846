"""The main job and its companions: ``tally run``, reproduction, diff, import and reports.

This is the shell that wires ``ingest`` (the outside world) to ``ledger`` (the store) and
``projections`` (the books). Nothing below it imports it.
"""
