"""File formats and decoding shared by every layer above: images, atomic files, the mask codec, embedding files."""
