"""Model configurations: one dataclass module per family (`sam`, `sam2`, `sam3`), read only by the builders."""
