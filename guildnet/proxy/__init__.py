"""The reverse proxy that puts every workspace UI under the Host App's one origin.

Pure decision modules (``paths``: which target a URL names, ``policy``: whether that
target may be reached, ``headers``: what crosses the proxy in each direction,
``resolve``: how to reach a workspace) are kept apart from the I/O (the streaming
engine and ``portforward``) so that every decision is unit- and property-tested
without a network.
"""
