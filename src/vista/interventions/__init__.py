"""Interventions on stored embeddings: SAE edits, steering, erasure, and how they are scored."""
