"""Models behind one protocol: the vision-language adapter and the dual-encoder classifier."""
