"""Per-cluster RethinkDB: the fixed driver, discovery, the manager and its monitor."""
