"""The Host App's HTTP surface: one Site, Klein routes, shared request handling."""
