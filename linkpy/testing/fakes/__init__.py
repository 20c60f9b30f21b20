"""Emulators of the discovery backends' HTTP APIs (Consul, Kubernetes, Marathon).

Each runs on a loopback port inside the caller's nursery and is scripted from
tests with synchronous methods; ``python -m linkpy.testing.fakes`` runs one from
the command line.
"""
