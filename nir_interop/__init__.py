"""NIR interchange: export bundles to NIR graphs and compile NIR graphs to the core (docs/nir.md)."""
from .errors import NIRImportError
from .export import export_nir, write_nir
from .importer import import_nir, read_nir
from .reference import simulate_nir

__all__ = ["NIRImportError", "export_nir", "write_nir", "import_nir", "read_nir", "simulate_nir"]
