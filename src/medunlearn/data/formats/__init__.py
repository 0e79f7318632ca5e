"""Import and export of real-world hospital data formats."""
