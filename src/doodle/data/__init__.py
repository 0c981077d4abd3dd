"""Data: the `Drawing` type, readers and writers for every format, simplification, the store."""
