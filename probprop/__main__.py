"""``python -m probprop``: the ``probprop`` command line (see :mod:`probprop.cli`)."""

from probprop._entry import main

if __name__ == "__main__":
    main()
