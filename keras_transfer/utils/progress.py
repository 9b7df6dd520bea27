"""Progress output that suits where it goes: a bar on a terminal, lines in a log."""

import sys


def is_interactive():
    """Whether standard output is a terminal or a notebook (where bars redraw)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def progress_verbose(verbose):
    """The Keras `verbose` to use: a bar (1) only when the output is interactive.

    Keras's progress bar (`verbose=1`) redraws itself with carriage returns
    and colour codes, which fill a file or a CI log with control characters;
    `verbose=2` writes one plain line per epoch (or pass) instead. `"auto"`,
    `True` and `1` give 1 on a terminal or in a notebook and 2 elsewhere; 0
    and 2 are kept.

    Examples:

        >>> progress_verbose(0)
        0
        >>> progress_verbose(2)
        2
    """
    if verbose == "auto" or verbose is True:
        verbose = 1
    if verbose == 1 and not is_interactive():
        return 2
    return verbose
