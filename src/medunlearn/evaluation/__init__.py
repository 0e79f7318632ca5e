"""Scores, privacy audits, reconstruction attacks and distances to the retrain oracle."""
