"""GlobMed records, languages, tasks/mixtures and the grain input pipeline."""
