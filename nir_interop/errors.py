"""The one error type of the NIR importer."""
from bsnn.firmware_export.errors import BSNNError


class NIRImportError(BSNNError, ValueError):
    """A NIR graph the core cannot express (one line, naming the offending node)."""
