"""Where things live: the SQL catalog, content-addressed source files, the Qdrant vector index."""
