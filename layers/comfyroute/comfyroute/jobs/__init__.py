"""The job rules: one owner of every status change (lifecycle), and the routes and state
machine tasks built on it (submit, follow, notify, cancel, queries)."""
