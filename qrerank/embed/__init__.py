"""Local sentence-transformers encoder folders (assembled offline from packaged model files)."""
