"""Database access: the embedded PostGIS manager, connections and migrations."""
