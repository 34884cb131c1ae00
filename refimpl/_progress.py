"""A one-line progress bar on stderr (shown only when stderr is a terminal, else one line at the end)."""

import sys


class Progress:
    def __init__(self, total, label, *, width=30, stream=None):
        self.total, self.label, self.width = max(int(total), 1), label, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n = 0

    def update(self, n=1):
        self.n += n
        if self.tty:
            done = self.width * self.n // self.total
            bar = "#" * done + "." * (self.width - done)
            self.stream.write(f"\r{self.label} [{bar}] {self.n}/{self.total}")
            self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {self.n}/{self.total} done\n")
        self.stream.flush()
