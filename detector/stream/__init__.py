"""The stream worker: a thin Faust layer around the pure engine (topics, tables, web pages)."""
