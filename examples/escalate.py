"""Payload mode: the step that triage.py adds for urgent messages.

``ASYA_HANDLER=escalate.escalate``: marks the payload so that whoever reads
the finished message sees it was escalated.
"""


def escalate(payload):
    return dict(payload, priority="high", notify=["on-call"])
