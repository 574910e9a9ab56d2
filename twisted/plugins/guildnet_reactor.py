"""``twistd --reactor=guildnet``: see ``guildnet.reactor``."""

from twisted.application.reactors import Reactor

guildnet = Reactor(
    "guildnet",
    "guildnet.reactor",
    "epoll(4) reactor with a short dispatch path for GuildNet's proxy sockets.",
)
