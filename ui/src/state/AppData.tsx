// App-wide data: the UI config and the registered clusters (reloaded after changes).
import { createContext, useContext, type ReactNode } from "react";
import { api } from "../api/client";
import type { Cluster, UiConfig } from "../api/types";
import { useFetch, type Fetched } from "../lib/hooks";

export interface AppData {
  config: Fetched<UiConfig>;
  clusters: Fetched<Cluster[]>;
}

const AppDataContext = createContext<AppData | null>(null);

export function AppDataProvider({ children }: { children: ReactNode }) {
  const config = useFetch("ui-config", (signal) => api.uiConfig(signal));
  const clusters = useFetch("clusters", (signal) => api.clusters(signal));
  return <AppDataContext.Provider value={{ config, clusters }}>{children}</AppDataContext.Provider>;
}

export function useAppData(): AppData {
  const v = useContext(AppDataContext);
  if (!v) throw new Error("useAppData outside AppDataProvider");
  return v;
}
