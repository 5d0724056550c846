"""Tally as a service: the HTTP API, its tokens, health checks and metrics."""
