"""Payload-mode handlers run with ASYA_INCLUDE_METADATA=true."""


def echo_with_metadata(payload):
    # Returns the "_asya" key it was given; the runtime must strip it.
    return payload


def report_metadata(payload):
    # Moves what the handler saw under other keys so the test can inspect it.
    return {"seen_metadata": payload.get("_asya"), "seen_keys": sorted(payload)}


def fan_out_with_metadata(payload):
    return [payload, dict(payload, copy=2)]


def tamper_with_metadata(payload):
    # Changing the metadata copy must change nothing about the message.
    payload["_asya"]["route"]["actors"].append("injected")
    payload["_asya"]["route"]["current"] = 99
    payload["_asya"]["headers"]["injected"] = True
    payload["added_by_handler"] = True
    return {"done": True}
