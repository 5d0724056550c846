"""Tally's shell: the command line, the main job and everything that wires the core
(``ledger``) to the outside world (``ingest``) and to the books (``projections``).

Nothing below imports this package. Importing it is cheap: each part loads what it needs
when it runs.
"""

__version__ = "0.1.0"
