"""The outside world -> events: sources, retries, breakers, fallback, snapshots."""
