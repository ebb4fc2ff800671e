"""Payload mode: always raises, so every message must end in error-end."""


class InventoryError(Exception):
    pass


def handle(payload):
    raise InventoryError(f"no stock for item {payload.get('item')!r}")
