"""``python3 -m asya_sidecar [--exit-when-idle SECONDS] [--max-messages N]``.

Configuration comes from the environment (see ../README.md); the two options
override ASYA_EXIT_WHEN_IDLE and ASYA_MAX_MESSAGES. By default it runs until
SIGTERM or SIGINT.
"""

import argparse
import logging
import os
import sys
import threading

from .sidecar import EXIT_CONFIG, Config, ConfigError, Sidecar, install_stop_handlers


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="asya_sidecar",
        description="Fake Asya sidecar: feeds one actor runtime from a directory queue.")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS",
                        help="exit 0 once the queue has been empty this long")
    parser.add_argument("--max-messages", type=int, metavar="N",
                        help="exit 0 after handling N messages")
    return parser.parse_args(argv)


def main(argv=None, environ=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    level_name = (environ.get("ASYA_LOG_LEVEL") or "INFO").upper()
    level = logging.getLevelName(level_name)
    logging.basicConfig(
        level=level if isinstance(level, int) else logging.INFO,
        format="%(asctime)s %(levelname)s asya-sidecar %(message)s",
        stream=sys.stderr,
    )
    try:
        if not isinstance(level, int):
            raise ConfigError(f"ASYA_LOG_LEVEL={level_name!r} is not a logging level (DEBUG, INFO, WARNING, ERROR)")
        config = Config.from_environ(environ)
        if args.exit_when_idle is not None:
            if not args.exit_when_idle > 0:
                raise ConfigError("--exit-when-idle must be greater than 0")
            config.exit_when_idle = args.exit_when_idle
        if args.max_messages is not None:
            if args.max_messages <= 0:
                raise ConfigError("--max-messages must be greater than 0")
            config.max_messages = args.max_messages
    except ConfigError as exc:
        logging.getLogger("asya-sidecar").error("configuration error: %s", exc)
        return EXIT_CONFIG
    stop = threading.Event()
    install_stop_handlers(stop)
    return Sidecar(config, stop).run()


if __name__ == "__main__":
    sys.exit(main())
