"""benchmark_model-compatible runner for x86_64 virtual test devices.

Run as `python -m harness.runner --graph=... ` or as the single-file zipapp
that harness.runner_zipapp makes. Nothing here imports TensorFlow or pandas;
the runner needs only numpy and ai_edge_litert from the Python that runs it.
"""
