"""The `harness` console script and `python -m harness.cli`: the commands live in harness.commands."""

from harness.commands import main

if __name__ == "__main__":
    main()
