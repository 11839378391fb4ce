"""Talking to phones, real or virtual, over adb: one phone (device), every phone on every adb server
(discovery), what a phone says about itself (facts), the lab's tier rules and farm.toml (profiles), its power,
temperatures and CPU clocks, and the lease that keeps two sweeps off one phone."""
