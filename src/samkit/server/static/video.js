// video mode (placeholder)
