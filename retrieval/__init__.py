"""KB records, encoders, the Chroma store and multi-view candidate retrieval."""
