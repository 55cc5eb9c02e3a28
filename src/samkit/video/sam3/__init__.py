"""SAM 3 video: concept detection on every frame, tracked with SAM 2-style memory.

`frames` loads a clip as the official video model does, `detect` runs the image detector on one
frame with the session's prompt (joint scores, mask NMS), `predictor` answers the official
request API (`Sam3VideoPredictor.handle_request`).
"""
