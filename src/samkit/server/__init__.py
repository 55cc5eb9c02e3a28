"""The interactive web app (`samkit serve`) and the mask/image encoding it shares with the CLI.

`samkit.io.masks` needs only numpy/PIL/torch; `samkit.server.app` needs the `[server]`
extra (fastapi, uvicorn).
"""
