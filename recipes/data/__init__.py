"""Data: manifests (CSV), audio reading, DynamicItemDataset pipelines."""
