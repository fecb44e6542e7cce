"""lakehouse subpackage."""
