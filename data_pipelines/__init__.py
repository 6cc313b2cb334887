"""Importers, validation and dataset builders for GlobMed and its source datasets."""
