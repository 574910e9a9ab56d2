"""GuildNet: a single-origin HTTPS Host App for Kubernetes IDE workspaces."""

__version__ = "0.1.0"
