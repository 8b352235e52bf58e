"""The pipeline's stages, one module each, in dvc.yaml's order: prepare, train, evaluate."""
