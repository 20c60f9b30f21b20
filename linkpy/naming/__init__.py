"""The name algebra of linkpy: Finagle/Linkerd 1.x naming, pure (no I/O, no trio).

Paths, name trees, dtabs, addresses, binding and delegation, to the letter of
Finagle 21.4 and Linkerd 1.7 so that existing dtabs mean the same thing here::

    >>> from linkpy.naming import Dtab, Path
    >>> Dtab.read("/svc => /#/io.l5d.fs").lookup(Path.read("/svc/users")).show()
    '/#/io.l5d.fs/users'
"""

from ..errors import ParseError as ParseError
from ._addr import ENDPOINT_WEIGHT_KEY as ENDPOINT_WEIGHT_KEY
from ._addr import WEIGHT_KEY as WEIGHT_KEY
from ._addr import Addr as Addr
from ._addr import AddrBound as AddrBound
from ._addr import Address as Address
from ._addr import AddrFailed as AddrFailed
from ._addr import AddrSource as AddrSource
from ._addr import Bound as Bound
from ._addr import Metadata as Metadata
from ._addr import all_addr as all_addr
from ._bind import MAX_DEPTH as MAX_DEPTH
from ._bind import BindResult as BindResult
from ._bind import Name as Name
from ._bind import NamerLookup as NamerLookup
from ._bind import bind as bind
from ._bind import chain_namers as chain_namers
from ._bind import resolve as resolve
from ._delegate import DAlt as DAlt
from ._delegate import DDelegate as DDelegate
from ._delegate import DelegateResult as DelegateResult
from ._delegate import DelegateTree as DelegateTree
from ._delegate import DEmpty as DEmpty
from ._delegate import DException as DException
from ._delegate import DFail as DFail
from ._delegate import DLeaf as DLeaf
from ._delegate import DNeg as DNeg
from ._delegate import DTransformation as DTransformation
from ._delegate import DUnion as DUnion
from ._delegate import DWeighted as DWeighted
from ._delegate import delegate as delegate
from ._delegate import delegate_json as delegate_json
from ._delegate import delegate_leaves as delegate_leaves
from ._delegate import dumps as dumps
from ._dtab import ANY as ANY
from ._dtab import Dentry as Dentry
from ._dtab import Dtab as Dtab
from ._dtab import Prefix as Prefix
from ._path import Path as Path
from ._pattern import PathPattern as PathPattern
from ._pattern import substitute as substitute
from ._state import Failed as Failed
from ._state import Ok as Ok
from ._state import Pending as Pending
from ._state import State as State
from ._system import SYSTEM_NAMERS as SYSTEM_NAMERS
from ._system import InetFactory as InetFactory
from ._system import SystemNamer as SystemNamer
from ._system import global_lookup as global_lookup
from ._tree import Alt as Alt
from ._tree import Empty as Empty
from ._tree import Fail as Fail
from ._tree import Leaf as Leaf
from ._tree import NameTree as NameTree
from ._tree import Neg as Neg
from ._tree import Union as Union
from ._tree import Weighted as Weighted
