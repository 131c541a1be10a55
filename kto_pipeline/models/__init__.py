"""Models: checkpoint folders and their manifest, and the registry of promotions."""
