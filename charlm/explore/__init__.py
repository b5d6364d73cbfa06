"""The explorer: a local page that looks inside a trained model (runs, API, HTTP server, static page)."""
