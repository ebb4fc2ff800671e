"""Answers a plain-ASCII request with text that is not: non-ASCII letters, a
tab and DEL, which the reply must carry as raw UTF-8 (DEL unescaped)."""


def process(payload):
    return {"greeting": "grüß dich, " + payload["name"] + " 👋", "tab": "a\tb", "del": "\x7f"}


def echo(payload):
    return payload
