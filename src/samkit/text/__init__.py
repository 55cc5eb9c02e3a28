"""Text processing for SAM 3: the CLIP BPE tokenizer and its shipped vocabulary."""
