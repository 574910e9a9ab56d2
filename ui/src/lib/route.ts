// Hash routes: the selected cluster is part of every workspace URL, and the Host App
// only ever serves "/" (no server-side route list to keep in sync).
//
//   #/clusters
//   #/c/<cluster>                     workspaces (filters in ?q=&phase=)
//   #/c/<cluster>/launch
//   #/c/<cluster>/servers/<id>[/logs|/ide]
//   #/c/<cluster>/admin
//   #/c/<cluster>/data[/<db>[/<table>]]   the Data section (RethinkDB)

export type ServerTab = "overview" | "logs" | "ide";

export type Route =
  | { name: "home" }
  | { name: "clusters" }
  | { name: "workspaces"; cluster: string; q: string; phase: string }
  | { name: "launch"; cluster: string }
  | { name: "server"; cluster: string; id: string; tab: ServerTab }
  | { name: "admin"; cluster: string }
  | { name: "data"; cluster: string; db: string | null; table: string | null }
  | { name: "notfound"; path: string };

function dec(part: string): string | null {
  try {
    return decodeURIComponent(part);
  } catch {
    return null;
  }
}

export function parseRoute(hash: string): Route {
  const raw = hash.replace(/^#/, "");
  const [path = "", query = ""] = raw.split("?", 2) as [string, string | undefined];
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.length === 0) return { name: "home" };
  if (parts.length === 1 && parts[0] === "clusters") return { name: "clusters" };
  if (parts[0] === "c" && parts.length >= 2) {
    const cluster = dec(parts[1] ?? "");
    if (!cluster) return { name: "notfound", path };
    const rest = parts.slice(2);
    if (rest.length === 0 || (rest.length === 1 && rest[0] === "workspaces")) {
      return { name: "workspaces", cluster, q: params.get("q") ?? "", phase: params.get("phase") ?? "" };
    }
    if (rest.length === 1 && rest[0] === "launch") return { name: "launch", cluster };
    if (rest.length === 1 && rest[0] === "admin") return { name: "admin", cluster };
    if (rest[0] === "data" && rest.length <= 3) {
      const db = rest.length >= 2 ? dec(rest[1] ?? "") : null;
      const table = rest.length === 3 ? dec(rest[2] ?? "") : null;
      if ((rest.length < 2 || db) && (rest.length < 3 || table)) return { name: "data", cluster, db, table };
    }
    if (rest[0] === "servers" && (rest.length === 2 || rest.length === 3)) {
      const id = dec(rest[1] ?? "");
      const tab = (rest[2] ?? "overview") as string;
      if (id && (tab === "overview" || tab === "logs" || tab === "ide")) {
        return { name: "server", cluster, id, tab };
      }
    }
  }
  return { name: "notfound", path };
}

const enc = encodeURIComponent;

export function href(route: Route): string {
  switch (route.name) {
    case "home":
      return "#/";
    case "clusters":
      return "#/clusters";
    case "workspaces": {
      const params = new URLSearchParams();
      if (route.q) params.set("q", route.q);
      if (route.phase) params.set("phase", route.phase);
      const qs = params.toString();
      return `#/c/${enc(route.cluster)}${qs ? `?${qs}` : ""}`;
    }
    case "launch":
      return `#/c/${enc(route.cluster)}/launch`;
    case "admin":
      return `#/c/${enc(route.cluster)}/admin`;
    case "data":
      return `#/c/${enc(route.cluster)}/data${route.db ? `/${enc(route.db)}` : ""}${
        route.db && route.table ? `/${enc(route.table)}` : ""
      }`;
    case "server":
      return `#/c/${enc(route.cluster)}/servers/${enc(route.id)}${route.tab === "overview" ? "" : `/${route.tab}`}`;
    case "notfound":
      return `#${route.path}`;
  }
}

export const to = {
  clusters: (): Route => ({ name: "clusters" }),
  workspaces: (cluster: string, q = "", phase = ""): Route => ({ name: "workspaces", cluster, q, phase }),
  launch: (cluster: string): Route => ({ name: "launch", cluster }),
  admin: (cluster: string): Route => ({ name: "admin", cluster }),
  data: (cluster: string, db: string | null = null, table: string | null = null): Route => ({
    name: "data",
    cluster,
    db,
    table,
  }),
  server: (cluster: string, id: string, tab: ServerTab = "overview"): Route => ({ name: "server", cluster, id, tab }),
};

/** The cluster a route is about, if any. */
export function routeCluster(route: Route): string | null {
  return "cluster" in route ? route.cluster : null;
}
