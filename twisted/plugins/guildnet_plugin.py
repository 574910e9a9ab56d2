"""twistd plugin: ``twistd -n guildnet [options]`` runs the Host App.

Options override the environment variable of the same knob; a malformed
value exits with status 2 and one line naming the variable.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer

from guildnet.config import KNOBS, ConfigError, Settings, load_settings


class Options(usage.Options):
    longdesc = (
        "GuildNet Host App: one HTTPS origin for Kubernetes IDE workspaces. Every option "
        "overrides the environment variable named in its help."
    )
    optParameters = [
        [k.option, None, None, f"{k.help} [env {k.env}; default {k.default or 'unset'}]"]
        for k in KNOBS
    ]

    settings: Settings

    def postOptions(self) -> None:
        overrides = {k.env: self[k.option] for k in KNOBS if self[k.option] is not None}
        try:
            self.settings = load_settings(os.environ, overrides)
        except ConfigError as e:
            sys.stderr.write(f"guildnet: configuration error: {e}\n")
            raise SystemExit(2) from None


@implementer(IServiceMaker, IPlugin)
class GuildNetServiceMaker:
    tapname = "guildnet"
    description = "GuildNet Host App (HTTPS API, workspace proxy, embedded operator)."
    options = Options

    def makeService(self, options: Any) -> Any:
        from twisted.internet import reactor

        from guildnet.app import HostApp
        from guildnet.logformat import twistd_log_observer

        app = HostApp(options.settings, dict(os.environ), reactor)
        # twistd's own log destination, with a cheaper formatter of the same text.
        app.log_observer = twistd_log_observer(getattr(options, "parent", None))
        return app


serviceMaker = GuildNetServiceMaker()
