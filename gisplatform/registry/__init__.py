"""Layer definitions as data: the runtime layer (layer.py), the definition schema
(definition.py) that describes built-in and published layers alike, and the registry of
published layers with their table generation (published.py, migration 0019)."""
