"""Who is asking (identity) and what they may do (roles), for every listener."""
