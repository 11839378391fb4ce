"""tflite-farm: benchmark TensorFlow Lite variants across a device farm.

Kept import-light on purpose: the device-side runner and the CLI start fast
because nothing heavy (TensorFlow, pandas, streamlit) is imported here.
"""

__version__ = "0.1.0"
