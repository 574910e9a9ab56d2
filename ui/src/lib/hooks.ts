// React hooks: hash routing, fetches that retry with backoff, a clock.
import { useCallback, useEffect, useRef, useState, useSyncExternalStore } from "react";
import { ApiError } from "../api/client";
import { backoffDelay } from "./backoff";
import { href, parseRoute, type Route } from "./route";

function subscribeHash(cb: () => void): () => void {
  window.addEventListener("hashchange", cb);
  return () => window.removeEventListener("hashchange", cb);
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(subscribeHash, () => window.location.hash);
  return parseRoute(hash);
}

export function navigate(route: Route, replace = false): void {
  const target = href(route);
  if (replace) window.history.replaceState(null, "", target);
  else window.location.hash = target;
  if (replace) window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** `Date.now()`, refreshed every `ms` (ages and countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export interface Fetched<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  /** When the next automatic retry happens (ms epoch), if one is scheduled. */
  retryAt: number | null;
  reload: () => void;
}

/**
 * Runs `load` now and whenever `key` changes. Retryable failures (Host App or cluster
 * unreachable, 5xx) are retried with backoff while the component is mounted; the last
 * good data stays visible meanwhile.
 */
export function useFetch<T>(key: string, load: (signal: AbortSignal) => Promise<T>): Fetched<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(true);
  const [retryAt, setRetryAt] = useState<number | null>(null);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const attempt = useRef(0);
  const lastKey = useRef(key);

  useEffect(() => {
    if (lastKey.current !== key) {
      lastKey.current = key;
      attempt.current = 0;
      setData(null);
    }
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | null = null;
    setLoading(true);
    loadRef
      .current(controller.signal)
      .then((value) => {
        if (controller.signal.aborted) return;
        attempt.current = 0;
        setData(value);
        setError(null);
        setRetryAt(null);
        setLoading(false);
      })
      .catch((e: unknown) => {
        if (controller.signal.aborted) return;
        const err = e instanceof ApiError ? e : new ApiError(0, "client_error", String(e));
        setError(err);
        setLoading(false);
        if (err.retryable) {
          const delay = backoffDelay(attempt.current++);
          setRetryAt(Date.now() + delay);
          timer = setTimeout(() => setTick((t) => t + 1), delay);
        } else setRetryAt(null);
      });
    return () => {
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [key, tick]);

  const reload = useCallback(() => {
    attempt.current = 0;
    setTick((t) => t + 1);
  }, []);
  return { data, error, loading, retryAt, reload };
}

/** Runs `fn` at most once per `ms`, trailing (detail refreshes after bursts of changes). */
export function useThrottled(fn: () => void, ms: number): () => void {
  const fnRef = useRef(fn);
  fnRef.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(
    () => () => {
      if (timer.current) clearTimeout(timer.current);
    },
    [],
  );
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      fnRef.current();
    }, ms);
  }, [ms]);
}
