// App-wide data: the UI config and the registered clusters (reloaded after changes).
import { createContext, useContext, type ReactNode } from "react";
import { api } from "../api/client";
import type { Cluster, UiConfig, WhoAmI } from "../api/types";
import { useFetch, type Fetched } from "../lib/hooks";

export interface AppData {
  config: Fetched<UiConfig>;
  clusters: Fetched<Cluster[]>;
  /** Who is asking and their role: the header shows it, a `none` role explains itself. */
  whoami: Fetched<WhoAmI>;
}

const AppDataContext = createContext<AppData | null>(null);

export function AppDataProvider({ children }: { children: ReactNode }) {
  const config = useFetch("ui-config", (signal) => api.uiConfig(signal));
  const clusters = useFetch("clusters", (signal) => api.clusters(signal));
  const whoami = useFetch("whoami", (signal) => api.whoami(signal));
  return (
    <AppDataContext.Provider value={{ config, clusters, whoami }}>{children}</AppDataContext.Provider>
  );
}

export function useAppData(): AppData {
  const v = useContext(AppDataContext);
  if (!v) throw new Error("useAppData outside AppDataProvider");
  return v;
}
