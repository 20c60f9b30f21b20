"""Kubernetes namers: ``io.l5d.k8s``, ``io.l5d.k8s.ns`` and ``io.l5d.k8s.external``.

Entry points (group ``linkpy.namers``)::

    io.l5d.k8s = linkpy_k8s:K8sConfig
    io.l5d.k8s.ns = linkpy_k8s:K8sNsConfig
    io.l5d.k8s.external = linkpy_k8s:K8sExternalConfig

and transformers (group ``linkpy.transformers``)::

    io.l5d.k8s.daemonset = linkpy_k8s:DaemonSetConfig
    io.l5d.k8s.localnode = linkpy_k8s:LocalNodeConfig

See ``docs/namers/k8s.md``.
"""

from .namer import K8sConfig as K8sConfig
from .namer import K8sExternalConfig as K8sExternalConfig
from .namer import K8sExternalNamer as K8sExternalNamer
from .namer import K8sNamer as K8sNamer
from .namer import K8sNsConfig as K8sNsConfig
from .transformers import DaemonSetConfig as DaemonSetConfig
from .transformers import LocalNodeConfig as LocalNodeConfig

PLUGINS = {
    "io.l5d.k8s": K8sConfig,
    "io.l5d.k8s.ns": K8sNsConfig,
    "io.l5d.k8s.external": K8sExternalConfig,
}
