"""Workspaces on one cluster: informers, the embedded operator and CRUD."""
