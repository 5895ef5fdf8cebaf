"""`geosleuth serve`: the engine over HTTP, for bots (and anything else) far from the GPU.

It uses the engine's public API only and imports no chat library.
"""
