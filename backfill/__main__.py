import sys

try:
    from backfill.cli import main
except KeyboardInterrupt:  # Ctrl-C while starting up: nothing was sent
    sys.exit(130)

main()
