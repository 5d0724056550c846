"""The main job: the cycle loop, its inputs, strategies, backtest and live runs, the run
context and fingerprint, and the commit of one cycle."""
