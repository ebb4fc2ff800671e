"""The one test kit of the project, standard library only.

Every suite imports it (pytest puts tests/kit on sys.path through the root
pytest.ini; the bench and the soak add it themselves). It speaks the wire
protocol of docs/protocol.md from scratch, without reusing runtime code, so
the tests check the runtime against the specification rather than against
itself.

Modules: paths (where the runtime is), wire (the frame client), process
(ChildProcess, RuntimeProcess), inprocess (the runtime's own code on a
socketpair), wait (wait_for, wait_until_accepting), interpreters (the one
supported range and interpreter discovery), logs (reading the runtime's log
lines, text or JSON), gated (a message to the gated handler fixture).
"""
