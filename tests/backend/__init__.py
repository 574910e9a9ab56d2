"""A code-server-like HTTP backend for proxy tests and the proxy benchmark.

See ``tests.backend.server`` for the routes; run it with
``python -m tests.backend --host H --port P``.
"""
