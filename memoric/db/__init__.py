"""The database layer: the only package that knows which SQL dialect it talks to."""
