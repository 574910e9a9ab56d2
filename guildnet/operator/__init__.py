"""The Workspace operator: pure desired-state and status builders, plus the controller.

The pure modules (``spec``, ``images``, ``desired``, ``status``) do no I/O so they can be
property-tested; the controller calls them and talks to Kubernetes.
"""
