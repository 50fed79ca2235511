"""``svclink.configure()``: settings built and checked, their certificate files loaded, then installed.

Core checks every value without touching the disk; the TLS files the settings name are
read here, before the settings are installed, so a missing CA file or a wrong key
password fails at configure time with the setting named, and nothing is half-installed.
Each ``configure()`` reads them anew: that is how a renewed certificate is taken up.
"""

from __future__ import annotations

from typing import Any

from ._tls import load_all
from .core import logs
from .core.settings import Settings, install, load


def configure(**values: Any) -> Settings:
    """Build and install the process-wide settings (explicit values over the environment).

    Also installs svclink's log context for the transport libraries' records (see
    :func:`svclink.logs.install`): from here on they carry the request id and are redacted.
    """
    settings = load(values)
    load_all(settings, fresh=True)
    logs.install()
    return install(settings)
