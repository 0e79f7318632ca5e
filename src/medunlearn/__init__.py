"""medunlearn: machine unlearning for medical multimodal AI."""

__version__ = "0.1.0"
