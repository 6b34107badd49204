"""PageLens vocabulary: Pydantic models, settings and errors. Imports nothing heavy."""

from schemas.coords import BBox, union
from schemas.documents import Document, Page, Word
from schemas.errors import (
    ConfigError,
    InputError,
    ModelBehaviorError,
    PageLensError,
    StoreError,
)
from schemas.results import ErrorInfo, FileOutcome, Hit, IngestReport
from schemas.settings import Settings

__all__ = [
    "BBox",
    "ConfigError",
    "Document",
    "ErrorInfo",
    "FileOutcome",
    "Hit",
    "IngestReport",
    "InputError",
    "ModelBehaviorError",
    "Page",
    "PageLensError",
    "Settings",
    "StoreError",
    "Word",
    "union",
]
