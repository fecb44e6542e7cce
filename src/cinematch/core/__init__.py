"""The lowest layer: settings, errors, structured logging, secrets, typed results."""
