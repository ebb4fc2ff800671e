"""Free TCP ports on 127.0.0.1 for the servers the tests start (broker, registry)."""

import random
import socket


def loopback_port_free(port):
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def free_loopback_ports(count=1, low=20000, high=40000):
    """A port p with p .. p+count-1 all free on 127.0.0.1; returns p."""
    for _ in range(200):
        port = random.randrange(low, high - count + 1)
        if all(loopback_port_free(p) for p in range(port, port + count)):
            return port
    raise RuntimeError(f"no {count} free consecutive loopback port(s) in {low}..{high}")
