"""Handlers packaged the usual way: /app/my_package, with PYTHONPATH=/app."""
