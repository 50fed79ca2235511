"""The ``.netrc`` credentials a call may take from the environment, decided once for both sides.

With ``trust_env=True`` a call to a host listed in ``.netrc`` carries that entry's login
as HTTP Basic credentials, as curl and requests do, but only when the call has no
``Authorization`` header of its own: requests would replace the caller's header with
the file's credentials, and httpx (from 0.28) does not read the file at all, so
neither library is left to decide. The file is found the way requests finds it:
``$NETRC``, else ``~/.netrc``, else ``~/_netrc``.
"""

from __future__ import annotations

import base64
import netrc
import os
import urllib.parse
from collections.abc import MutableMapping

from ..context.outgoing import header

_FILES = ("~/.netrc", "~/_netrc")


def netrc_authorization(url: str) -> str | None:
    """The ``Authorization`` value ``.netrc`` gives the host of ``url``, or None.

    An unreadable or malformed file gives None, as it does in requests: a file a call
    did not ask for must not break it.
    """
    host = urllib.parse.urlsplit(url).hostname
    named = os.environ.get("NETRC")
    paths = (named,) if named is not None else _FILES
    path = next((p for p in map(os.path.expanduser, paths) if os.path.exists(p)), None)
    if host is None or path is None:
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if entry is None or not any(entry):
        return None
    login, account, password = entry
    pair = f"{login or account or ''}:{password or ''}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def add_authorization(headers: MutableMapping[str, str], value: str | None) -> None:
    """Give ``headers`` the ``Authorization`` ``value`` unless they already have one (any case)."""
    if value is not None and header(headers, "Authorization") is None:
        headers["Authorization"] = value
