"""``python -m jarvis_trio``: the ``jarvis-trio`` command line."""

from jarvis_trio.cli import main

if __name__ == "__main__":
    main()
