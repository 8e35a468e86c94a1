"""The one error type of the NIR importer."""


class NIRImportError(ValueError):
    """A NIR graph the core cannot express (one line, naming the offending node)."""
