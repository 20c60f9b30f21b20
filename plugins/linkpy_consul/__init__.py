"""``io.l5d.consul``: service discovery from Consul's catalog, with blocking queries.

``/#/io.l5d.consul/<dc>/<service>`` (or ``/<dc>/<tag>/<service>`` with
``includeTag: true``) binds to the instances of a Consul service; ``.local`` is the
agent's own datacenter.  See docs/namers/consul.md.

- :mod:`.config`: :class:`ConsulConfig`, the YAML keys;
- :mod:`.api`: py-consul on a trio/httpx adapter, and the pure JSON parsers;
- :mod:`.namer`: :class:`ConsulNamer` and its blocking-query loops.
"""

from .api import AgentInfo as AgentInfo
from .api import ConsulError as ConsulError
from .api import Instance as Instance
from .api import TrioConsul as TrioConsul
from .api import parse_agent as parse_agent
from .api import parse_catalog as parse_catalog
from .api import parse_health as parse_health
from .config import ConsulConfig as ConsulConfig
from .config import TagWeight as TagWeight
from .namer import ConsulNamer as ConsulNamer
