"""Kubernetes transformers: ``io.l5d.k8s.daemonset`` and ``io.l5d.k8s.localnode``.

They make the per-node linker topology work (Linkerd's "linker-to-linker" setup):

- ``io.l5d.k8s.daemonset`` (on the *outgoing* router) replaces each destination pod's
  address with the address of the linkpy pod of the DaemonSet on the same node, so the
  request goes to the destination node's linkpy (its *incoming* router).  The DaemonSet's
  pods are found like any name, through the endpoints of a Service that selects them
  (``namespace``, ``service``, ``port``), watched live.
- ``io.l5d.k8s.localnode`` (on the *incoming* router) keeps the destination addresses on
  this node only.

"Same node" is the same ``nodeName`` when ``hostNetwork: true`` (the pods share the
node's IP, so the namer's ``nodeName`` metadata is what tells them apart), and else the
same /24 network as the pod IP (Kubernetes gives each node a pod CIDR, commonly a /24:
Linkerd's heuristic).  An address that no linkpy pod matches is dropped; a name with no
address left is ``Addr.Neg``, and the dtab's next alternative is tried.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

import attrs
import trio

from linkpy.activity import Var
from linkpy.errors import ConfigError
from linkpy.naming import Addr, Address, Path
from linkpy.plugin import NamerContext
from linkpy.router.transformers import (
    FilterTransformer,
    GatewayTransformer,
    Transformer,
    TransformerConfig,
    TransformerContext,
    TreeAddr,
)

from .api import NODE_NAME
from .namer import K8sConfig, K8sNamer, Mode, parse_name

#: Linkerd's node-subnet heuristic: pods of one node share a /24.
SUBNET_BITS = 24


def same_node_subnet(a: Address, b: Address) -> bool:
    """Both IP addresses are in one /24 (IPv6: one /64)."""
    try:
        x, y = ipaddress.ip_address(a.host), ipaddress.ip_address(b.host)
    except ValueError:
        return False
    if x.version != y.version:
        return False
    bits = SUBNET_BITS if x.version == 4 else 64
    return ipaddress.ip_network(f"{x}/{bits}", strict=False) == ipaddress.ip_network(
        f"{y}/{bits}", strict=False
    )


def same_node_name(a: Address, b: Address) -> bool:
    """Both addresses carry the same ``nodeName`` metadata."""
    node = a.metadata.get(NODE_NAME)
    return node is not None and node == b.metadata.get(NODE_NAME)


class DaemonSetTransformer(GatewayTransformer):
    """Each address becomes the linkpy pod on its node (see the module docs)."""

    def __init__(self, prefix: Path, namer: K8sNamer, name: Path, host_network: bool) -> None:
        self.namer = namer
        gateways: Var[Addr] = TreeAddr(namer.lookup(name))
        super().__init__(prefix, gateways, same_node_name if host_network else same_node_subnet)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.namer.run(task_status=task_status)


@attrs.frozen(kw_only=True)
class DaemonSetConfig(TransformerConfig):
    """``kind: io.l5d.k8s.daemonset``."""

    #: where the DaemonSet's Service is, and the port (name or number) of the linkpy
    #: router to send to (the incoming one)
    namespace: str
    service: str
    port: str
    #: the Kubernetes API: Linkerd's kubectl proxy keys; without them, in a pod, the
    #: API server with the service account (as the io.l5d.k8s namer's ``auto`` mode)
    k8sHost: str | None = None
    k8sPort: int | None = None
    mode: Mode = "auto"
    #: match by node name (pods on the host network) rather than by /24 subnet
    hostNetwork: bool = False

    default_prefix = "/io.l5d.k8s.daemonset"

    def full_prefix(self) -> Path:
        if self.prefix:
            return super().full_prefix()
        return Path.utf8("%", "io.l5d.k8s.daemonset", self.namespace, str(self.port), self.service)

    def mk(self, ctx: TransformerContext) -> Transformer:
        cfg = K8sConfig(host=self.k8sHost, port=self.k8sPort, mode=self.mode)
        namer = cfg.mk(NamerContext(metrics=ctx.metrics, config_dir=ctx.config_dir))
        assert isinstance(namer, K8sNamer)
        namer.prefix = Path.utf8("#", "io.l5d.k8s")
        name = Path.utf8(self.namespace, str(self.port), self.service)
        if parse_name(name, namespace=None, label_key=None) is None:
            raise ConfigError(
                f"transformer io.l5d.k8s.daemonset: {name.show()} is not a Kubernetes "
                "namespace/port/service"
            )
        return DaemonSetTransformer(self.full_prefix(), namer, name, self.hostNetwork)


@attrs.frozen(kw_only=True)
class LocalNodeConfig(TransformerConfig):
    """``kind: io.l5d.k8s.localnode``: keep the addresses on this node.

    This node is ``$POD_IP`` (its /24) or, with ``hostNetwork: true``, ``$NODE_NAME``;
    both are set from the downward API in the DaemonSet.
    """

    hostNetwork: bool = False

    default_prefix = "/io.l5d.k8s.localnode"

    def mk(self, ctx: TransformerContext) -> Transformer:
        return self.build(os.environ)

    def build(self, env: Mapping[str, str]) -> Transformer:
        if self.hostNetwork:
            node = env.get("NODE_NAME", "").strip()
            if not node:
                raise ConfigError(
                    "transformer io.l5d.k8s.localnode: hostNetwork needs the environment "
                    "variable NODE_NAME (set it from spec.nodeName with the downward API)"
                )
            prefix = self._prefix(node)

            def on_node(a: Address) -> bool:
                return a.metadata.get(NODE_NAME) == node

            return FilterTransformer(prefix, on_node)
        ip = env.get("POD_IP", "").strip()
        try:
            here = Address(str(ipaddress.ip_address(ip)), 0)
        except ValueError:
            raise ConfigError(
                "transformer io.l5d.k8s.localnode: the environment variable POD_IP "
                f"{'is not set' if not ip else f'= {ip!r} is not an IP address'} "
                "(set it from status.podIP with the downward API)"
            ) from None
        return FilterTransformer(self._prefix(here.host), lambda a: same_node_subnet(a, here))

    def _prefix(self, where: str) -> Path:
        if self.prefix:
            return self.full_prefix()
        return Path.utf8("%", "io.l5d.k8s.localnode", where)
