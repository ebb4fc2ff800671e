"""Scenario 5: a handler that raises for a payload it cannot use.

ASYA_HANDLER=my_package.validate.require_amount. The message must land in
error-end with the runtime's error code and this exception's text.
"""


def require_amount(payload):
    if not isinstance(payload.get("amount"), (int, float)):
        keys = ", ".join(sorted(payload)) or "none"
        raise ValueError(f"payload needs a numeric 'amount'; it has keys: {keys}")
    return {"amount": payload["amount"], "valid": True}
