"""recommender subpackage."""
