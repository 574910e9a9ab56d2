import { useEffect } from "react";
import logo from "./assets/favicon.svg";
import { DEFAULT_CLUSTER } from "./api/client";
import { ErrorBoundary, ErrorNotice, Spinner } from "./components/common";
import { countdown } from "./lib/format";
import { navigate, useNow, useRoute } from "./lib/hooks";
import { href, routeCluster, to, type Route } from "./lib/route";
import { AdminScreen } from "./screens/Admin";
import { DataScreen } from "./screens/Data";
import { ClustersScreen } from "./screens/Clusters";
import { LaunchScreen } from "./screens/Launch";
import { ServerScreen } from "./screens/Server";
import { WorkspacesScreen } from "./screens/Workspaces";
import { AppDataProvider, useAppData } from "./state/AppData";
import { ServersProvider, useServers } from "./state/ServersProvider";

export function App() {
  return (
    <AppDataProvider>
      <Shell />
    </AppDataProvider>
  );
}

function Shell() {
  const route = useRoute();
  const cluster = routeCluster(route);
  const { config, clusters } = useAppData();

  // "/" goes to the default cluster's workspaces, else the first cluster, else Clusters.
  useEffect(() => {
    if (route.name !== "home") return;
    if (config.data) {
      const first = config.data.defaultCluster ?? clusters.data?.[0]?.id ?? null;
      if (first) navigate(to.workspaces(first), true);
      else if (clusters.data) navigate(to.clusters(), true);
    }
  }, [route.name, config.data, clusters.data]);

  useEffect(() => {
    const names: Record<Route["name"], string> = {
      home: "GuildNet",
      clusters: "Clusters",
      workspaces: "Workspaces",
      launch: "Launch",
      server: route.name === "server" ? route.id : "Workspace",
      admin: "Admin",
      data: route.name === "data" ? [route.table, route.db, "Data"].filter(Boolean).join(" · ") : "Data",
      notfound: "Not found",
    };
    document.title = route.name === "home" ? "GuildNet" : `${names[route.name]} · GuildNet`;
  }, [route]);

  const body = (
    <main id="main" className="main" tabIndex={-1}>
      <ErrorBoundary resetKey={href(route)}>
        <Screen route={route} />
      </ErrorBoundary>
    </main>
  );

  return (
    <div className="app">
      <a className="skip-link" href="#main" onClick={(e) => {
        e.preventDefault();
        document.getElementById("main")?.focus();
      }}>
        Skip to content
      </a>
      <Header route={route} cluster={cluster} />
      <HostBanner />
      <AccessBanner />
      {cluster ? (
        <ServersProvider key={cluster} cluster={cluster}>
          <StreamBanner />
          {body}
        </ServersProvider>
      ) : (
        body
      )}
      <footer className="footer">
        GuildNet {config.data ? `v${config.data.version}` : ""}
        {config.data ? ` · namespace ${config.data.namespace}` : ""}
      </footer>
    </div>
  );
}

function Screen({ route }: { route: Route }) {
  switch (route.name) {
    case "home":
      return <Spinner label="Opening GuildNet…" />;
    case "clusters":
      return <ClustersScreen />;
    case "workspaces":
      return <WorkspacesScreen cluster={route.cluster} q={route.q} phase={route.phase} />;
    case "launch":
      return <LaunchScreen cluster={route.cluster} />;
    case "server":
      return <ServerScreen cluster={route.cluster} id={route.id} tab={route.tab} />;
    case "admin":
      return <AdminScreen cluster={route.cluster} />;
    case "data":
      return <DataScreen cluster={route.cluster} db={route.db} table={route.table} />;
    case "notfound":
      return (
        <section className="card">
          <h1>Page not found</h1>
          <p>
            Nothing lives at <code>#{route.path}</code>. Go to the <a href={href(to.clusters())}>clusters</a>.
          </p>
        </section>
      );
  }
}

function Header({ route, cluster }: { route: Route; cluster: string | null }) {
  const { clusters, whoami } = useAppData();
  // Admin actions are refused to others (403): do not offer them.
  const mayAdmin = !whoami.data || whoami.data.role === "admin";
  const list = clusters.data ?? [];
  const current = cluster ?? DEFAULT_CLUSTER;
  const known = list.some((c) => c.id === current);
  const nav: { label: string; route: Route; active: boolean }[] = cluster
    ? [
        {
          label: "Workspaces",
          route: to.workspaces(cluster),
          active: route.name === "workspaces" || route.name === "server",
        },
        { label: "Launch", route: to.launch(cluster), active: route.name === "launch" },
        { label: "Data", route: to.data(cluster), active: route.name === "data" },
        ...(mayAdmin ? [{ label: "Admin", route: to.admin(cluster), active: route.name === "admin" }] : []),
      ]
    : [];
  return (
    <header className="header">
      <a className="brand" href={href({ name: "home" })}>
        <img src={logo} alt="" width="24" height="24" />
        GuildNet
      </a>
      {list.length > 0 ? (
        <label className="cluster-picker">
          <span className="visually-hidden">Cluster</span>
          <span aria-hidden="true" className="muted">Cluster</span>
          <select
            value={cluster && known ? cluster : cluster ? `__unknown:${cluster}` : ""}
            onChange={(e) => {
              const id = e.target.value;
              if (!id || id.startsWith("__")) return;
              if (route.name === "launch" || route.name === "admin") navigate({ ...route, cluster: id });
              else if (route.name === "data") navigate(to.data(id));
              else navigate(to.workspaces(id));
            }}
          >
            {!cluster ? <option value="">Choose…</option> : null}
            {cluster && !known ? <option value={`__unknown:${cluster}`}>{cluster} (unknown)</option> : null}
            {list.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id}
                {c.reachable ? "" : " — unreachable"}
              </option>
            ))}
          </select>
        </label>
      ) : null}
      <nav aria-label="Main" className="nav">
        {nav.map((n) => (
          <a key={n.label} href={href(n.route)} aria-current={n.active ? "page" : undefined}>
            {n.label}
          </a>
        ))}
        <a href={href(to.clusters())} aria-current={route.name === "clusters" ? "page" : undefined}>
          Clusters
        </a>
      </nav>
      <Me />
    </header>
  );
}

/** Who the Host App thinks you are (from the connection, never a login form). */
function Me() {
  const { whoami } = useAppData();
  const me = whoami.data;
  if (!me) return null;
  const where = me.source === "local" ? "this machine" : me.node || "the tailnet";
  return (
    <span className="whoami" data-testid="whoami" title={`${me.login} on ${where}`}>
      <span className="visually-hidden">Signed in as </span>
      {me.displayName || me.login}
      <span className={`role role-${me.role}`}>{me.role}</span>
    </span>
  );
}

/** A caller without a role sees why everything else is refused. */
function AccessBanner() {
  const { whoami } = useAppData();
  const me = whoami.data;
  if (!me || me.role !== "none") return null;
  return (
    <div className="banner">
      <div className="notice notice-warn" role="alert">
        <strong>No access.</strong> GuildNet knows you as <code>{me.login}</code>
        {me.node ? <> on <code>{me.node}</code></> : null}, with no role. Ask a GuildNet admin
        to grant you the <code>user</code> role (a Tailscale grant or the policy file).
      </div>
    </div>
  );
}

/** The Host App itself is unreachable (start-up fetches failing). */
function HostBanner() {
  const { config } = useAppData();
  if (!config.error || !config.error.retryable) return null;
  return (
    <div className="banner">
      <ErrorNotice error={config.error} retryAt={config.retryAt} onRetry={config.reload} />
    </div>
  );
}

/** The live stream of the current cluster is down: say why and when it retries. */
function StreamBanner() {
  const { stream, problem, retryNow, cluster } = useServers();
  const now = useNow(1000);
  if (stream.kind !== "retrying") return null;
  return (
    <div className="banner">
      <div className="notice notice-warn" role="alert">
        <strong>
          {problem?.kind === "host"
            ? "Cannot reach the Host App."
            : problem?.kind === "missing"
              ? "Unknown cluster."
              : problem?.kind === "cluster"
                ? `Cluster “${cluster}” is unavailable.`
                : "Live updates interrupted."}
        </strong>{" "}
        <span>{problem?.message ?? "Checking why…"}</span>{" "}
        <span className="muted">
          Reconnecting {countdown(stream.retryAt, now)} (attempt {stream.attempt}).
        </span>{" "}
        <button type="button" className="btn btn-small" onClick={retryNow}>
          Retry now
        </button>
        {problem?.kind === "missing" ? (
          <>
            {" "}
            <a href={href(to.clusters())}>Manage clusters</a>
          </>
        ) : null}
      </div>
    </div>
  );
}
