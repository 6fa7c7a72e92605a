"""What a run keeps: the content-addressed stage cache, the results store, run folders and provenance."""
