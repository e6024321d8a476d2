"""The state directory's content-addressed store of verified objects, and what fills it."""
