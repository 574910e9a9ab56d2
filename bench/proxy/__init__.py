"""Proxy benchmark (``python -m bench.proxy``): direct vs GuildNet vs nginx vs CHP."""
