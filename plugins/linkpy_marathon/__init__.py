"""``io.l5d.marathon``: service discovery from Marathon (Mesos), polling and event stream.

``/#/io.l5d.marathon/<app id...>[/residual]`` binds to the tasks of the app whose id is
the shortest prefix of the path (lower-cased), as Linkerd 1.x does; changes arrive
through Marathon's ``/v2/events`` stream at once, with polling every ``ttlMs`` as the
safety net.  See docs/namers/marathon.md.
"""

from .config import MarathonConfig as MarathonConfig
from .namer import MarathonNamer as MarathonNamer
