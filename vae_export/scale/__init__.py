"""Scale-out on existing distributed engines, on top of the torch-free runtime:

- batch jobs (`encode`, `score`, `generate`) in process or on Ray Data (`jobs.py`),
- HTTP serving with dynamic batching on Ray Serve (`serve.py`),
- a model repository for NVIDIA Triton's ONNX Runtime backend (`triton.py`).

Nothing here is imported by the core package: Ray and pyarrow come with the `scale` extra
(`pip install vae-export[scale]`) and are imported only by the commands that use them.
"""
