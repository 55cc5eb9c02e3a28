"""Checkpoint -> model: family detection and one builder module per family (`sam`, `sam2`, `sam3`)."""
