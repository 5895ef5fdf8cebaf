"""Reference imagery from the open street-level platforms, crawled into an index."""
