"""Video frame sources: folders, arrays, video files (PyAV), live iterators; `open_video` picks one."""
