"""The one test kit of the project, standard library only.

Every suite imports it (pytest puts tests/kit on sys.path through the root
pytest.ini; the bench and the soak add it themselves). It speaks the wire
protocol of docs/protocol.md from scratch, without reusing runtime code, so
the tests check the runtime against the specification rather than against
itself.
"""
