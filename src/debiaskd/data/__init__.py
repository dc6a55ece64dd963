"""Data layer: the embedded NLI and vision bias benchmarks, loaders for real data, dataset
folders (write/read/build), Great Expectations validation and bias-aware augmentation."""
