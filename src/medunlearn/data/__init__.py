"""Hospital data: the tree, samples, deletion requests and file formats."""
