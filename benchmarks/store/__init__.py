"""Results on disk: the run folder writer and the schema reader. Standard library only, so reports can read results without torch."""
