"""What the neural backends share: PyTorch on demand, device choice, weight files.

Nothing here imports torch at import time: the weight-free engine runs without it, and
`geosleuth models fetch` runs on a machine that has the internet but no PyTorch.
"""
