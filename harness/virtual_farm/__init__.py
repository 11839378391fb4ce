"""Virtual Android devices on loopback: the device side of adb, a sandboxed file
system, an emulated shell, and a documented power/thermal model.

`harness farm up|down|status|fault` (cli.py, farm.py) runs them; each device
process is `python -m harness.virtual_farm` (server.py).
"""
