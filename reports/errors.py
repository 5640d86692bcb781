"""The one error a report raises for bad input (a missing suite, a damaged CSV given with --from-csv,
an output path that is a file): its message is one line saying what and why, and the command line
prints it without a traceback. Damaged run folders are not errors: they are excluded with a reason."""


class ReportError(RuntimeError):
    """The report cannot be built; the message is one line saying why."""
