"""Checkpoints: read (CPU, weights-only, strict, key report), write (safetensors), download."""

from samkit.checkpoint.download import (
    CheckpointUnavailableError,
    checkpoint_path,
    default_cache_dir,
    download_file,
    fetch_checkpoint,
    sha256_file,
)
from samkit.checkpoint.load import LoadReport, load_state_dict_into, save_checkpoint
from samkit.checkpoint.read import read_metadata, read_state_dict

__all__ = [
    "CheckpointUnavailableError",
    "LoadReport",
    "checkpoint_path",
    "default_cache_dir",
    "download_file",
    "fetch_checkpoint",
    "load_state_dict_into",
    "read_metadata",
    "read_state_dict",
    "save_checkpoint",
    "sha256_file",
]
