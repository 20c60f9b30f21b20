"""linkpy: a Linkerd-1.x-style service-mesh router in Python on trio."""

__version__ = "0.1.0"
