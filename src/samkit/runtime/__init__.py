"""Execution options applied to a built model: precision (bfloat16), int8 dynamic quantisation, torch.compile."""
