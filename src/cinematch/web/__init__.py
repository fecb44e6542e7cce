"""The web layer: the FastAPI app and the dashboard over the published views."""
