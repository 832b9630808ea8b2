"""The ``probprop`` console script: Ctrl-C while the command line loads ends it like Ctrl-C
during a command (the line "interrupted", exit status 130), not with a KeyboardInterrupt
traceback from inside an import. :class:`probprop.cli._Main` takes over once it runs."""

from __future__ import annotations

import os
import signal
import sys


def _interrupted_while_loading(signum, frame):
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def main():
    try:
        signal.signal(signal.SIGINT, _interrupted_while_loading)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        pass
    from probprop.cli import main as cli

    return cli()
