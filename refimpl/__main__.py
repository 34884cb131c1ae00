"""`python -m refimpl ...` is the `refimpl` command."""

from .cli import entry

if __name__ == "__main__":
    entry()
