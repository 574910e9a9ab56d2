"""Per-cluster state: the Registry of Instances and what each one owns."""
