"""Image heuristics and launch presets: what the operator assumes about well-known images.

Known IDE images listen on known ports; anything else gets 8080 (HTTP) and 8443 and a
``PORT`` variable, which many web frameworks honour. Defaults are deliberately minimal:
GuildNet does not rewrite an image's command line, because a wrong guess breaks start-up
in ways the user cannot see. Notes per image:

* code-server (``codercom/code-server``): listens on 8080 as uid 1000 (matching the pod's
  ``runAsUser``); password auth reads ``PASSWORD``, which the operator fills from a
  per-workspace Secret. Its entrypoint passes ``--bind-addr 0.0.0.0:8080`` explicitly, so a
  different port needs the user's own ``args``. linuxserver's variant listens on 8443.
* Jupyter (docker-stacks, ``quay.io/jupyter/*``): listens on 8888 as uid 1000. JupyterLab
  builds every URL from its ``base_url`` (``/static/lab/...``, ``/api/...``), so with ``/``
  behind a sub-path the page is blank, and with ``base_url`` set but the prefix stripped
  it answers 404. So Jupyter runs in the proxy's ``preserve`` path mode: the operator sets
  ``NOTEBOOK_ARGS`` (docker-stacks' ``start-notebook.py`` appends it to ``jupyter lab``;
  a locally built image must do the same) to ``--ServerApp.base_url=<canonical prefix>/``
  and ``--ServerApp.trust_xheaders=True`` (the browser's address in Jupyter's log, https
  as the scheme), and the proxy forwards the full public path. Nothing else is needed
  behind the same-origin proxy: Host and Origin reach Jupyter unchanged, so its
  WebSocket and API origin checks pass; ``allow_origin`` is not widened (it would let
  any site drive the kernel with the user's cookie). Token auth stays on:
  ``JUPYTER_TOKEN`` comes from the workspace Secret when the controller supplies a
  password, otherwise Jupyter makes its own token and prints it in the logs. Probes hit
  ``<base>/api`` (the version document, served without the token).
* Home volume: mounted where the image keeps its user's work (code-server ``/home/coder``,
  linuxserver ``/config``, Jupyter ``/home/jovyan``, anything else ``/workspace``);
  ``spec.storage.mountPath`` overrides it.
* Everything else is served from ``/`` and runs in ``strip`` mode. A workspace's
  ``spec.proxy.pathMode`` overrides the image's mode either way.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from guildnet.operator.spec import Port

ImageKind = Literal["code-server", "jupyter", "generic"]
PathMode = Literal["strip", "preserve"]

CODE_SERVER_PORT: Final = 8080
LINUXSERVER_CODE_SERVER_PORT: Final = 8443
JUPYTER_PORT: Final = 8888
GENERIC_PORTS: Final = (Port(8080, "http"), Port(8443, "https"))
CODE_SERVER_HOME: Final = "/home/coder"  # codercom/code-server's user
LINUXSERVER_HOME: Final = "/config"  # linuxserver's images keep everything there
JUPYTER_HOME: Final = "/home/jovyan"  # docker-stacks' NB_USER
GENERIC_HOME: Final = "/workspace"

#: The RethinkDB server image GuildNet's manifests and test tiers use (pinned: a tag other
#: than ``latest`` keeps Kubernetes' default pull policy at IfNotPresent).
RETHINKDB_IMAGE: Final = "rethinkdb:2.4.4"


def _repository(image: str) -> tuple[str, str]:
    """(registry host or "", repository path) of an image reference, lower-cased."""
    ref = image.strip().lower().split("@", 1)[0]
    head, _, tail = ref.rpartition("/")
    if ":" in tail:  # a tag, not a registry port (those sit before a '/')
        tail = tail.split(":", 1)[0]
    path = f"{head}/{tail}" if head else tail
    first, sep, rest = path.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return "", path


def image_kind(image: str) -> ImageKind:
    """Classify an image reference by its repository name (registry, tag and digest ignored)."""
    _registry, path = _repository(image)
    parts = path.split("/")
    last = parts[-1]
    if last == "code-server":
        return "code-server"
    if (
        parts[0] == "jupyter"
        or "jupyter" in last
        or "notebook" in last
        or last.endswith("-notebook")
    ):
        return "jupyter"
    return "generic"


def _is_linuxserver(image: str) -> bool:
    _registry, path = _repository(image)
    return path.split("/")[0] == "linuxserver"


@attrs.frozen
class ImageDefaults:
    """What the operator uses for an image when the spec leaves it out.

    ``password_env`` names the variable that gets the workspace Secret's password (None:
    the image needs none). ``path_mode`` is the proxy's path mode when the spec sets none;
    ``probe_path`` is what the probes ask, relative to the app's base path.
    """

    kind: ImageKind
    ports: tuple[Port, ...]
    env: tuple[tuple[str, str], ...]
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    password_env: str | None = None
    path_mode: PathMode = "strip"
    probe_path: str = "/"
    #: Where the user's work lives: the home volume's default mount path.
    home: str = GENERIC_HOME

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ports": [p.to_dict() for p in self.ports],
            "env": [{"name": k, "value": v} for k, v in self.env],
            "args": list(self.args),
            "command": list(self.command),
            "passwordEnv": self.password_env,
            "pathMode": self.path_mode,
            "homePath": self.home,
        }


def image_defaults(image: str) -> ImageDefaults:
    """Ports, env and args the operator uses for ``image`` when the spec gives none."""
    kind = image_kind(image)
    path_mode: PathMode = "strip"
    probe_path = "/"
    home = GENERIC_HOME
    if kind == "code-server":
        linuxserver = _is_linuxserver(image)
        port = LINUXSERVER_CODE_SERVER_PORT if linuxserver else CODE_SERVER_PORT
        ports: tuple[Port, ...] = (Port(port, "http"),)
        password_env: str | None = "PASSWORD"
        home = LINUXSERVER_HOME if linuxserver else CODE_SERVER_HOME
        # /healthz answers without a login and, unlike every other path, does not count
        # as use (code-server's heartbeat): probes on / would keep it busy forever.
        probe_path = "/healthz"
    elif kind == "jupyter":
        ports = (Port(JUPYTER_PORT, "http"),)
        password_env = "JUPYTER_TOKEN"
        path_mode, probe_path = "preserve", "/api"
        home = JUPYTER_HOME
    else:
        ports = GENERIC_PORTS
        password_env = None
    return ImageDefaults(
        kind=kind,
        ports=ports,
        env=(("PORT", str(ports[0].container_port)),),
        password_env=password_env,
        path_mode=path_mode,
        probe_path=probe_path,
        home=home,
    )


def defaults_json(image: str) -> dict[str, Any]:
    """``GET /api/image-defaults?image=`` body: the defaults plus the image echoed back."""
    return {"image": image, **image_defaults(image).to_json()}


@attrs.frozen
class Preset:
    id: str
    name: str
    image: str
    description: str
    ports: tuple[Port, ...] = ()
    args: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "image": self.image,
            "description": self.description,
            "kind": image_kind(self.image),
        }
        if self.ports:
            out["ports"] = [p.to_dict() for p in self.ports]
        if self.args:
            out["args"] = list(self.args)
        return out


PRESETS: Final[tuple[Preset, ...]] = (
    Preset(
        id="code-server",
        name="VS Code (code-server)",
        image="codercom/code-server:4.139.1",
        description="Visual Studio Code in the browser. Sign in with the generated password "
        "shown on the server's page.",
    ),
    Preset(
        id="jupyter",
        name="JupyterLab",
        image="quay.io/jupyter/base-notebook:lab-4.6.6",
        description="JupyterLab with Python and conda (Jupyter Docker Stacks base image). "
        "Token auth stays on; the token is shown on the server's page or in its logs.",
    ),
    Preset(
        id="web-app",
        name="Web app (httpbin)",
        image="mccutchen/go-httpbin:2.26.0",
        description="A tiny HTTP server that echoes each request (/anything, /headers, "
        "/websocket/echo): a quick check that launching and proxying work.",
        ports=(Port(8080, "http"),),
        args=("--port", "8080"),
    ),
)


def preset_json() -> list[dict[str, Any]]:
    """``GET /api/images`` body."""
    return [p.to_json() for p in PRESETS]
