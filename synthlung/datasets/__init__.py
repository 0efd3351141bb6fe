"""Datasets in: MSD Task06_Lung, generic image/label folders and single pairs -> a checked catalog."""
from __future__ import annotations

from .catalog import SCHEMA_VERSION, CaseRecord, Catalog, load_catalog
from .ingestion import ingest

__all__ = ["ingest", "load_catalog", "Catalog", "CaseRecord", "SCHEMA_VERSION"]
