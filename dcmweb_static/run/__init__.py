"""Converting: options, sources, one instance into a staged folder, the batch over a
process pool, the SOP-UID registry, commits through the store, the run report."""
