"""Code split across two trees: this package in /app, its helpers in /opt/models."""
