"""``python -m tests.backend --host H --port P``: serve the test backend until SIGINT/SIGTERM."""

from tests.backend.server import main

if __name__ == "__main__":
    raise SystemExit(main())
