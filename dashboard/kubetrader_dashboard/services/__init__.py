"""Service functions: the one core the REST routes (and through them the UI) call."""
